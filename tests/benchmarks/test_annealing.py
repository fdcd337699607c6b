"""The simulated-annealing reference of the plan-quality benchmark on problems whose
optimum is known by construction."""

import numpy as np

from benchmarks.annealing import anneal, anneal_sweep
from brachycryo.planning.optimize import OarConstraint, TargetZone


def _problem():
    """Five target points (Rx 1 Gy); candidate i < 5 gives 1 Gy/U to point i only;
    candidate 5 covers point 0 but puts 2 Gy on an OAR point (Dmax 1 Gy); candidates
    6-9 give no dose.  Needles: 0-4 on needle 0, 5-9 on needle 1."""
    a = np.zeros((5, 10))
    a[np.arange(5), np.arange(5)] = 1.0
    a[0, 5] = 1.0
    zone = TargetZone("T", a, np.full(5, 0.2), 1.0)
    m = np.zeros((1, 10))
    m[0, 5] = 2.0
    oar = OarConstraint("OAR", "dmax", "dmax", 1.0, 0.0, m, np.array([0.1]))
    needle = np.array([0] * 5 + [1] * 5)
    depth = np.tile(np.arange(5.0) * 5, 2)
    return zone, oar, needle, depth


def test_annealing_finds_the_known_optimum_and_is_deterministic():
    zone, oar, needle, depth = _problem()
    kw = dict(sk_u=1.0, needle=needle, depth_mm=depth, exclusions=np.zeros((0, 2), int),
              max_needles=2, iterations=4000)  # fmt: skip
    r = anneal([zone], [oar], **kw)
    assert r.selection.chosen.tolist() == [0, 1, 2, 3, 4]
    assert r.selection.feasible
    assert r.selection.coverage["T"]["v100_pct"] == 100.0
    assert anneal([zone], [oar], **kw).selection.chosen.tolist() == [0, 1, 2, 3, 4]


def _pair_problem():
    """Two points (Rx 1 Gy); point 0 reaches Rx only from candidates 0 and 1 together
    (0.5 Gy/U each), point 1 from candidate 2 (needle 1) alone."""
    a = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    zone = TargetZone("T", a, np.full(2, 0.5), 1.0)
    kw = dict(sk_u=1.0, needle=np.array([0, 0, 1]), depth_mm=np.array([0.0, 5.0, 0.0]),
              iterations=6000)  # fmt: skip
    return zone, kw


def test_annealing_respects_exclusions():
    """Without the exclusion both 0 and 1 are chosen; with the pair excluded, never both."""
    zone, kw = _pair_problem()
    free = anneal([zone], [], exclusions=np.zeros((0, 2), int), max_needles=2, **kw)
    assert free.selection.chosen.tolist() == [0, 1, 2]
    r = anneal_sweep([zone], [], exclusions=np.array([[0, 1]]), max_needles=2, **kw)
    assert not {0, 1} <= set(r.selection.chosen.tolist())
    assert 2 in r.selection.chosen
    assert len(r.sweep) == 4 and r.iterations == 6000


def test_annealing_respects_the_needle_limit():
    """One needle allowed: needle 0 (both seeds, point 0) or needle 1, never both."""
    zone, kw = _pair_problem()
    r = anneal([zone], [], exclusions=np.zeros((0, 2), int), max_needles=1, **kw)
    chosen = r.selection.chosen.tolist()
    assert chosen in ([0, 1], [2])
