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


def test_probe_list_agrees_with_metrics_and_tracks_reach_the_skin(tmp_path):
    """probes.csv and metrics.json give the same probes (0.1 mm); every track enters on the
    body surface, clear of the no-go structures, from the side with the shorter track."""
    import csv
    import json

    from tests.planning.test_plan_failures import _run

    doc = {**CRYO_ONLY, "needles": {"no_go": ["Aorta", "Vertebra", "SpinalCord"]}}
    code, out = _run(tmp_path, doc, "--no-report")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    listed = metrics["lesions"]["GTV_Met1"]["cryo"]["probes"]
    rows = list(csv.DictReader((out / "probes.csv").open()))
    assert len(rows) == len(listed) >= 1
    for row, probe in zip(rows, listed, strict=True):
        tip = np.array([float(row[f"tip_{a}_mm"]) for a in "xyz"])
        entry = np.array([float(row[f"entry_{a}_mm"]) for a in "xyz"])
        np.testing.assert_allclose(tip, probe["tip_mm"], atol=0.1)
        np.testing.assert_allclose(entry, probe["entry_mm"], atol=0.1)
        depth = float(row["insertion_depth_mm"])
        assert depth == pytest.approx(np.linalg.norm(entry - tip), abs=0.15)
        assert row["entry_on_skin"] == "1" and row["crosses"] == "" and probe["crosses"] == []
        axis = np.array([float(row[f"dir_{a}"]) for a in "xyz"])
        assert (entry - tip) @ axis > 0  # the handle side is the entry side
    # the liver lesion lies on the patient's right: reached from the right, not across
    assert all(float(r["entry_x_mm"]) < 0 for r in rows)


def test_reversed_probe_keeps_its_freezing_zone():
    from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue
    from brachycryo.planning.probe_tracks import reversed_probe

    for model in load_probe_catalogue().values():
        p = Probe(model, (1.0, 2.0, 3.0), (0.0, 0.6, 0.8))
        q = reversed_probe(p)
        a, b = p.active_segment_mm()
        c, d = q.active_segment_mm()
        np.testing.assert_allclose(c, b, atol=1e-9)
        np.testing.assert_allclose(d, a, atol=1e-9)
        np.testing.assert_allclose(q.direction, -np.asarray(p.direction))
