"""The coverage goals are verified on the grid DVH of each zone's mask, as metrics.json
reports them, not only on the optimiser's sample points (planning/selection.py)."""

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.dose_kernels import load_seed_model
from brachycryo.planning.influence import OptimiserProblem, zone_masks
from brachycryo.planning.optimize import TargetZone
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.selection import coverage_on_grid, select_verified_seeds
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.qa.dvh import dvh_from_mask
from brachycryo.qa.metrics import dose_at_volume_pct, volume_at_dose_pct
from tests.planning.test_plan_end_to_end import SPEC


def _zone(name: str, rx: float) -> TargetZone:
    return TargetZone(name, np.zeros((1, 1)), np.ones(1), rx)


def test_coverage_on_grid_names_the_short_zone_and_the_dose_it_lacks():
    """A dose rising linearly along i through a box: the zone whose 95 % dose is below its
    prescription is reported with Rx over its D95 (here D95 < D90); a zone whose goals
    hold is not."""
    grid = Grid((4, 4, 40), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    dose = np.broadcast_to(np.arange(40, dtype=float) * 5.0 + 2.5, grid.shape).copy()
    mask = np.zeros(grid.shape, dtype=bool)
    mask[1:3, 1:3, 10:30] = True  # doses 52.5 ... 147.5 Gy
    zones = [_zone("hot", 40.0), _zone("short", 60.0)]
    found = coverage_on_grid(zones, [("hot", mask, 40.0), ("short", mask, 60.0)], grid, dose, 95.0)
    assert [c.name for c in found] == ["short"] and found[0].index == 1
    dvh = dvh_from_mask(mask, grid, dose, grid, name="short")
    d95 = dose_at_volume_pct(dvh, 95.0)
    assert d95 < 60.0 and found[0].ratio == pytest.approx(60.0 / d95)
    assert found[0].v100_pct == pytest.approx(volume_at_dose_pct(dvh, 60.0))
    # zones not in the problem, or empty, are skipped
    empty = np.zeros(grid.shape, dtype=bool)
    assert (
        coverage_on_grid(zones, [("other", mask, 60.0), ("short", empty, 60.0)], grid, dose, 95.0)
        == []
    )


def test_a_zone_short_on_the_grid_gets_its_optimiser_prescription_raised(tmp_path):
    """Asked for 6 % more dose on the grid than the optimiser's zones carry (as if the
    grid DVH read that much lower than the sample points), the selection is repeated with
    raised prescriptions until the grid DVH of every zone meets V100 >= 95 % and D90 at
    the demanded dose; its reported coverage is judged at the zones' own prescriptions."""
    spec = parse_plan_spec({**SPEC, "oar": []})
    result = make_plan(spec, tmp_path / "p", keep_problem=True)
    assert result.problem is not None and result.candidates is not None
    problem = OptimiserProblem(result.problem.zones, ())
    demanded = [(name, mask, 1.06 * rx) for name, mask, rx in zone_masks(spec, result.zones)]
    assert coverage_on_grid(problem.zones, demanded, result.grid, result.dose_gy, 95.0)
    verified = select_verified_seeds(
        spec, result.case, result.grid, load_seed_model(spec.seed_model), problem, [],
        result.candidates, backend="numba", zone_masks=demanded,
    )  # fmt: skip
    assert verified.selection.feasible
    assert any("optimiser prescription raised" in line for line in verified.selection.log)
    assert coverage_on_grid(problem.zones, demanded, result.grid, verified.dose_gy, 95.0) == []
    assert len(verified.seeds) > result.n_seeds
    for z in problem.zones:  # at the zone's own prescription, not the raised one
        cov = verified.selection.coverage[z.name]
        assert cov["v100_pct"] >= 95.0 and cov["d90_gy"] >= z.prescription_gy
