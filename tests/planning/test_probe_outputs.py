"""Cryo probes as inserted, in every output (issue 21): on a demo-like case (parallel
tracks, the approach side chosen by the planner) and on a free-track case (converging
tracks toward an entry region), every probe enters on the body surface on its approach
side, its tip is the deep end, and probes.csv, metrics.json and the zones RTSTRUCT give
the same probes within 0.1 mm."""

import csv
import json
import tomllib
from importlib import resources

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtstruct import read_rtstruct
from tests.planning.test_plan_end_to_end import _toml

LEFT_LATERAL = np.array([-1.0, 0.0, 0.0])  # the demo's needle insertion: from the left


def _demo_like() -> dict:
    """The demo's anatomy, structures and needle rules at 4 mm, its two cryo lesions only
    (the bulky mass as a cryo lesion), at most 4 probes each: a test of seconds."""
    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml")
    doc = tomllib.loads(text.read_text())
    doc["case"]["phantom"]["spacing_mm"] = [4.0, 4.0, 4.0]
    doc["dose"]["spacing_mm"] = 4.0
    doc["lesion"] = [
        {"roi": "GTV_Bulky", "allocation": "cryo"},
        {"roi": "GTV_Met1", "allocation": "cryo"},
    ]
    doc["cryo"]["max_probes"] = 4
    return doc


def _plan(folder, doc) -> int:
    (folder / "plan.toml").write_text(_toml(doc))
    return main(["plan", str(folder / "plan.toml"), "--out", str(folder / "out"), "--quiet",
                 "--no-report"])  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    # exit 3: 4 probes ablate only part of the bulky mass (its coverage goal binds, a
    # probe track crossing a no-go structure would too); every output is written
    assert _plan(folder, _demo_like()) == 3
    binding = json.loads((folder / "out" / "metrics.json").read_text())["binding"]
    assert binding and all(b.startswith("cryo GTV_Bulky: the best layout") for b in binding)
    return folder / "out"


#: The free-track case's entry region: points this far from the core's centre along the
#: approach, spread across it, so the tracks converge on the skin (they leave the body
#: before reaching the points).
ENTRY_DISTANCE_MM = 120.0
ENTRY_SPREAD_MM = 25.0


@pytest.fixture(scope="module")
def free(tmp_path_factory):
    """The liver metastasis from the right with converging tracks: the planner's probe
    search (``place_probes``) given entry points, as a free-track ``[cryo]`` layout."""
    import brachycryo.cryo_iceball.placement as placement

    original = placement.place_probes

    def from_entry_region(grid, core, *args, direction, **kwargs):
        kwargs.pop("entry_points_mm", None)  # the planner's own converging fallback's entries
        centre = grid.voxel_centres_mm()[np.asarray(core, bool)].mean(axis=0)
        axis = np.asarray(direction, float)  # tip -> handle: toward the skin
        across = np.cross(axis, [0.0, 0.0, 1.0])
        across /= np.linalg.norm(across)
        up = np.cross(axis, across)
        entries = [centre + ENTRY_DISTANCE_MM * axis + ENTRY_SPREAD_MM * (a * across + b * up)
                   for a, b in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]  # fmt: skip
        return original(grid, core, *args, direction=direction, entry_points_mm=entries,
                        **kwargs)  # fmt: skip

    folder = tmp_path_factory.mktemp("free")
    doc = _demo_like()
    doc["lesion"] = [{"roi": "GTV_Met1", "allocation": "cryo"}]
    doc["cryo"]["direction"] = [1.0, 0.0, 0.0]  # insertion from the patient's right
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(placement, "place_probes", from_entry_region)
        assert _plan(folder, doc) == 0
    return folder / "out"


def _probes_everywhere(out):
    """(csv rows, metrics.json probes in plan order, zones StructureSet)."""
    rows = list(csv.DictReader((out / "probes.csv").open()))
    metrics = json.loads((out / "metrics.json").read_text())
    listed = [p for b in metrics["lesions"].values() if "cryo" in b for p in b["cryo"]["probes"]]
    return rows, listed, read_rtstruct(out / "RS.zones.dcm")


def _xyz(row, prefix):
    return np.array([float(row[f"{prefix}_{a}"]) for a in ("x_mm", "y_mm", "z_mm")])


def _check_agreement(out):
    rows, listed, zones = _probes_everywhere(out)
    assert len(rows) == len(listed) >= 2
    probe_rois = [n for n in zones.roi_names if n.startswith("Probe")]
    assert len(probe_rois) == 2 * len(rows)
    for row, probe in zip(rows, listed, strict=True):
        n = row["probe_id"]
        tip, entry = _xyz(row, "tip"), _xyz(row, "entry")
        np.testing.assert_allclose(tip, probe["tip_mm"], atol=0.1)
        np.testing.assert_allclose(entry, probe["entry_mm"], atol=0.1)
        (line,) = zones.roi(f"Probe{n}_track").lines_mm
        np.testing.assert_allclose(line, [probe["entry_mm"], probe["tip_mm"]], atol=0.1)
        np.testing.assert_allclose(zones.roi(f"Probe{n}_tip").points_mm, [tip], atol=0.1)
        axis = np.array([float(row[f"dir_{a}"]) for a in "xyz"])
        np.testing.assert_allclose(axis, probe["direction"], atol=1e-3)
        assert zones.roi(f"Probe{n}_track").interpreted_type == "CONTROL"
        assert zones.roi(f"Probe{n}_tip").interpreted_type == "MARKER"
    return rows


def _check_as_inserted(out, rows):
    """Entry on the skin within a voxel, handle outside, tip the deep end in the lesion."""
    ct = load_ct_series(out / "case" / "CT")
    structures = read_rtstruct(next((out / "case").glob("RS*.dcm")))
    body = roi_mask(structures.roi("BODY"), ct.grid)
    voxel_mm = max(ct.grid.spacing_mm)
    for row in rows:
        tip, entry = _xyz(row, "tip"), _xyz(row, "entry")
        axis = np.array([float(row[f"dir_{a}"]) for a in "xyz"])
        depth = float(row["insertion_depth_mm"])
        np.testing.assert_allclose(entry, tip + depth * axis, atol=0.15)  # along the axis
        inward, handle = entry - voxel_mm * axis, entry + voxel_mm * axis
        inside = ct.grid.sample_nearest(body, np.array([inward, handle]), outside=False)
        assert inside.tolist() == [True, False], row  # the skin is within a voxel of entry
        gtv = roi_mask(structures.roi(row["lesion"]), ct.grid)
        centre = ct.grid.voxel_centres_mm()[gtv].mean(axis=0)
        start, end = (np.array([float(v) for v in row[k].split()])
                      for k in ("active_start_mm", "active_end_mm"))  # fmt: skip
        assert (tip - centre) @ axis < 0 < (entry - centre) @ axis  # tip deep, entry out
        zone_centre = 0.5 * (start + end)
        assert ct.grid.sample_nearest(gtv, zone_centre[None], outside=False)[0], row


def test_demo_probes_agree_and_enter_from_the_approach_side(demo, dciodvfy):
    rows = _check_agreement(demo)
    _check_as_inserted(demo, rows)
    for row in rows:
        entry_x, tip_x = float(row["entry_x_mm"]), float(row["tip_x_mm"])
        if row["lesion"] == "GTV_Bulky":  # the needles' left lateral approach
            assert (np.array([entry_x - tip_x, 0, 0]) @ LEFT_LATERAL) < 0
        else:  # the liver metastasis lies on the right: reached from the right
            assert entry_x < tip_x
        assert row["entry_on_skin"] == "1" and row["crosses"] == ""
    errors, _ = dciodvfy(demo / "RS.zones.dcm")
    assert errors == []


def test_free_tracks_converge_and_agree(free):
    rows = _check_agreement(free)
    _check_as_inserted(free, rows)
    axes = np.array([[float(r[f"dir_{a}"]) for a in "xyz"] for r in rows])
    assert np.all(axes[:, 0] < 0)  # toward the patient's right, where the entries are
    assert len({tuple(np.round(a, 3)) for a in axes}) >= 2  # not parallel: converging
    zones = read_rtstruct(free / "RS.zones.dcm")
    kinds = {c.geometric_type for n in zones.roi_names if n.endswith("_track")
             for c in zones.roi(n).contours}  # fmt: skip
    assert "OPEN_NONPLANAR" in kinds  # an oblique track leaves the axial plane
