"""Cryo probes point the way a physician inserts them: tip deep, handle outside (issue 21)."""

import numpy as np
import pytest

from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from tests.planning.test_plan_failures import CRYO_ONLY


@pytest.mark.parametrize("insertion", [(0.0, 1.0, 0.0), (-1.0, 0.0, 0.0)])
def test_probe_tips_are_deep_and_handles_point_out_along_the_track(tmp_path, insertion):
    doc = {**CRYO_ONLY, "cryo": {**CRYO_ONLY["cryo"], "direction": list(insertion)}}
    result = make_plan(parse_plan_spec(doc), tmp_path)
    ins = np.asarray(insertion)
    (layout,) = result.cryo.values()
    assert layout.probes
    for probe in layout.probes:
        axis = np.asarray(probe.direction)
        np.testing.assert_allclose(axis, -ins, atol=1e-12)  # tip -> handle: back out
        tip = np.asarray(probe.tip_mm)
        handle_end = tip + probe.model.active_length_mm * axis
        assert tip @ ins > handle_end @ ins  # the tip is the deeper end
        # the active zone lies inside the body, the tip no deeper than the body allows
        body = result.masks["BODY"]
        assert result.grid.sample_nearest(body, tip[None, :], outside=False)[0]
