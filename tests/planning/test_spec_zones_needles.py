"""Plan specification validation, zone geometry and needle candidates."""

import math

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError, InfeasiblePlanError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.planning.needles import candidate_seeds
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.planning.zones import expand_mm, lesion_zones, shrink_mm

BASE = {
    "case": {"phantom": {"seed": 1, "site": "abdomen"}},
    "prescription": {"dose_gy": 120.0, "seed_model": "6711", "sk_u": 0.6},
    "lesion": [{"roi": "GTV_Bulky", "allocation": "zoned"}],
}


def _with(**changes):
    import copy

    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        keys = path.split("__")
        d = doc
        for k in keys[:-1]:
            d = d[int(k)] if isinstance(d, list) else d.setdefault(k, {})
        d[keys[-1]] = value
    return doc


def test_defaults_and_units():
    spec = parse_plan_spec(_with(prescription__activity_mci=0.5, prescription__sk_u=None))
    assert spec.sk_u == pytest.approx(0.5 * 1.270)
    lesion = spec.lesions[0]
    assert lesion.margin_mm == 10.0 and lesion.core == "cryo"
    assert spec.needles.seed_spacing_mm == 10.0 and spec.prescription_gy == 120.0


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"prescription__dose_gy": float("nan")}, "prescription.dose_gy"),
        ({"prescription__dose_gy": -5.0}, "prescription.dose_gy"),
        ({"prescription__activity_mci": 0.5}, "prescription"),
        ({"lesion__0__allocation": "laser"}, "lesion[0].allocation"),
        ({"lesion__0__margin_mm": "ten"}, "lesion[0].margin_mm"),
        ({"lesion__0__typo": 1}, "lesion[0]"),
        ({"needles": {"seed_spacing_mm": 3.0}}, "needles.seed_spacing_mm"),
        ({"needles": {"direction": [0, 0, 0]}}, "needles.direction"),
        ({"oar": [{"roi": "Aorta"}]}, "oar[0]"),
        ({"oar": [{"roi": "Aorta", "v": [{"dose_gy": 100}]}]}, "oar[0].v[0]"),
        ({"cryo": {"min_spacing_mm": 30.0, "max_spacing_mm": 20.0}}, "cryo.min_spacing_mm"),
        ({"extra": 1}, "(root)"),
    ],
)
def test_invalid_values_name_the_key(changes, key):
    with pytest.raises(ConfigError) as e:
        parse_plan_spec(_with(**changes))
    assert e.value.key == key


def test_the_removed_sample_spacing_knob_is_an_unknown_key():
    """``[optimizer] sample_spacing_mm`` was parsed but never used (the sample points are
    the planning grid's voxel centres, ``[dose] spacing_mm``): a file that sets it is told so."""
    with pytest.raises(ConfigError, match="sample_spacing_mm") as e:
        parse_plan_spec(_with(optimizer={"sample_spacing_mm": 3.0}))
    assert e.value.key == "optimizer"


def test_oar_limit_terms_name_their_metrics():
    spec = parse_plan_spec(
        _with(oar=[{"roi": "Aorta", "dmax_gy": 300.0, "d2cc_gy": 250.0,
                    "v": [{"dose_gy": 100, "max_cc": 1.5}, {"dose_gy": 50, "max_pct": 20}]}])
    )  # fmt: skip
    terms = spec.oars[0].terms()
    assert [t.metric for t in terms] == ["dmax", "d2cc", "v100gy", "v50gy"]
    assert [t.label for t in terms] == ["Dmax", "D2cc", "V100Gy_cc", "V50Gy_pct"]
    assert [t.dvh_metric for t in terms] == ["Dmax", "D2cc", "V100Gy_cc", "V50Gy"]
    assert [t.reported_limit for t in terms] == [300.0, 250.0, 1.5, 20.0]
    assert [t.allowed_cc(oar_volume_cc=40.0) for t in terms] == [0.0, 2.0, 1.5, 8.0]


def test_expand_and_shrink_are_metric():
    g = Grid((41, 41, 41), (-40, -40, -40), (2.0, 2.0, 2.0))
    r = np.linalg.norm(g.voxel_centres_mm(), axis=-1)
    ball = r <= 10.0
    grown = expand_mm(ball, g, 10.0)
    assert r[grown].max() == pytest.approx(20.0, abs=2.0)
    assert grown[r <= 19.0].all()
    core = shrink_mm(expand_mm(ball, g, 10.0), g, 10.0)
    assert core[r <= 8.0].all() and not core[r > 12.5].any()


def test_zoned_lesion_zones():
    g = Grid((41, 41, 41), (-40, -40, -40), (2.0, 2.0, 2.0))
    c = g.voxel_centres_mm()
    r = np.linalg.norm(c, axis=-1)
    gtv = r <= 20.0
    oar = np.linalg.norm(c - [0, 27, 0], axis=-1) <= 5.0
    body = np.ones(g.shape, bool)
    z = lesion_zones(
        "L", "zoned", gtv, g, margin_mm=10, core_margin_mm=8, body=body, oars={"OAR": oar}
    )
    assert z.core is not None and (z.core <= gtv).all() and r[z.core].max() <= 12.5
    assert not (z.seed_target & z.core).any() and not (z.seed_target & oar).any()
    assert z.seed_target[(r > 14) & (r < 28) & ~oar].mean() > 0.95
    with pytest.raises(StructureError, match="inside its surface"):
        lesion_zones("L", "zoned", r <= 4.0, g, core_margin_mm=10.0, body=body)


def test_needles_avoid_no_go_and_respect_spacing():
    g = Grid((31, 41, 31), (-30, -40, -30), (2.0, 2.0, 2.0))
    c = g.voxel_centres_mm()
    target = np.linalg.norm(c, axis=-1) <= 12.0
    body = np.ones(g.shape, bool)
    # a bony plate posterior to the target blocks needles with |x| < 5 mm from behind
    plate = (np.abs(c[..., 1] - 25) <= 3) & (np.abs(c[..., 0]) <= 5)
    cands = candidate_seeds(g, target, body, no_go=plate, direction=(0, -1, 0),
                            pitch_mm=5.0, seed_spacing_mm=10.0)  # fmt: skip
    assert all(abs(t.entry_mm[0]) >= 4.0 for t in cands.tracks)  # none through the plate
    assert cands.rejected_tracks.get("no-go structure before the target", 0) >= 1
    assert np.all(np.linalg.norm(cands.positions_mm, axis=1) <= 12.0 + 2.0)
    for a, b in cands.exclusions:
        assert cands.needle[a] == cands.needle[b]
        assert abs(cands.depth_mm[a] - cands.depth_mm[b]) < 10.0
    with pytest.raises(InfeasiblePlanError) as e:
        candidate_seeds(g, target, body, avoid={"OAR": np.ones(g.shape, bool)}, clearance_mm=5.0)
    assert "seed-OAR clearance" in e.value.binding
    assert math.isfinite(cands.depth_mm.max())


def test_template_slides_past_a_no_go_rod_in_front_of_a_small_target():
    """A template fixed on the centroid sends its only track through this 8 mm target
    straight into a rod of bone in front of it (no candidate at all); the template is slid
    by a third of the pitch instead, past the rod, and its needles reach the target."""
    g = Grid((31, 31, 31), (-30, -30, -30), (2.0, 2.0, 2.0))
    c = g.voxel_centres_mm()
    target = (np.abs(c[..., 0]) <= 4) & (np.abs(c[..., 1]) <= 6) & (np.abs(c[..., 2]) <= 4)
    rod = (np.abs(c[..., 0]) <= 1) & (np.abs(c[..., 2]) <= 1) & (np.abs(c[..., 1] - 18) <= 2)
    body = np.ones(g.shape, bool)
    cands = candidate_seeds(g, target, body, no_go=rod, direction=(0, -1, 0), pitch_mm=10.0,
                            seed_spacing_mm=10.0)  # fmt: skip
    assert cands.n > 0
    assert all(abs(t.entry_mm[0]) > 2.0 or abs(t.entry_mm[2]) > 2.0 for t in cands.tracks)
    assert np.all(g.sample_nearest(target, cands.positions_mm, outside=False))


def test_empty_seed_target_names_what_took_it():
    from brachycryo.core.errors import InfeasiblePlanError

    g = Grid.from_bounds((-30, -30, -30), (30, 30, 30), 2.0)
    c = g.voxel_centres_mm()
    r = np.linalg.norm(c, axis=-1)
    gtv = r <= 8.0
    big_oar = r <= 25.0
    body = np.ones(g.shape, bool)
    with pytest.raises(InfeasiblePlanError, match=r"lesion L: .*OAR Liver covers 100 %") as exc:
        lesion_zones("L", "seeds", gtv, g, margin_mm=5, body=body, oars={"Liver": big_oar,
                     "Far": r >= 29.0})  # fmt: skip
    assert exc.value.binding == ["Liver"] and exc.value.exit_code == 3
