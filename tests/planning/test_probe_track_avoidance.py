"""Probe placement avoids what a track must not cross, instead of reporting the crossing
(issue 21): another approach is taken, and only when none is left does the plan fail,
naming the structure that blocks."""

import numpy as np
import pytest

import brachycryo.planning.pipeline as pipeline
from brachycryo.core.errors import InfeasiblePlanError
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.planning.zones import distance_outside_mm
from tests.planning.test_plan_failures import CRYO_ONLY

DOC = {
    **CRYO_ONLY,
    "needles": {"no_go": ["Aorta", "Vertebra", "SpinalCord"]},
    "oar": [{"roi": "Bowel", "d2cc_gy": 200.0}],  # Kidney_R would close the route from behind
}


def _with_wall(monkeypatch, wall_of):
    """Add a no-go 'Wall' (``wall_of(gtv, grid, body)`` on the track grid) to the plan's
    track obstacles; returns the walls made (to check the tracks against)."""
    made = []
    original = pipeline.track_obstacles

    def patched(spec, case, implanted):
        obstacles = original(spec, case, implanted)
        grid = obstacles.grid
        gtv = roi_mask(case.structures.roi("GTV_Met1"), grid, slice_thickness_mm=4.0)
        wall = wall_of(gtv, grid, obstacles.body)
        made.append((wall, grid))
        obstacles.near["Wall"] = wall
        return obstacles

    monkeypatch.setattr(pipeline, "track_obstacles", patched)
    return made


def test_blocked_approach_side_is_avoided(tmp_path, monkeypatch):
    """Unconstrained, the liver lesion's probes enter anteriorly (y < 0, the shorter
    track); with the body anterior to the lesion made no-go, the tracks come from behind
    (or converge from another side) and none enters the wall."""

    def anterior(gtv, grid, body):
        y = grid.voxel_centres_mm()[..., 1]
        front = y[gtv].min() - 10.0
        return body & (y < front)

    walls = _with_wall(monkeypatch, anterior)
    result = make_plan(parse_plan_spec(DOC), tmp_path)
    ((wall, grid),) = walls
    assert result.probe_tracks and result.cryo["GTV_Met1"].coverage > 0.5
    for t in result.probe_tracks:
        tip, entry = np.asarray(t.tip_mm), np.asarray(t.entry_mm)
        pts = tip + np.linspace(0.0, 1.0, 400)[:, None] * (entry - tip)
        assert not grid.sample_nearest(wall, pts, outside=False).any()
        assert entry[1] > tip[1]  # from behind: the handle posterior to the tip


def test_every_approach_blocked_exits_naming_the_structure(tmp_path, monkeypatch):
    """Everything in the body farther than 12 mm from the GTV is no-go: no track reaches
    the skin, and the error names the wall."""

    def around(gtv, grid, body):
        return body & (distance_outside_mm(gtv, grid) > 12.0)

    _with_wall(monkeypatch, around)
    with pytest.raises(InfeasiblePlanError, match="Wall") as err:
        make_plan(parse_plan_spec(DOC), tmp_path)
    assert any("Wall" in b for b in err.value.binding)
    assert "converging" in str(err.value)
