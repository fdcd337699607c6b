"""Ice balls on a patient CT + RTSTRUCT (brachycryo.planning.cryo_case, ``brachycryo iceball``
[ct]).

The patient is the phantom (brachycryo.phantoms) on a small grid around the bulky para-aortic
mass; one 17G probe in the mass ~6 mm from the aorta wall, 10 min freeze.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from brachycryo.core.errors import (
    ConfigError,
    FrameOfReferenceError,
    GeometryError,
    OutputExistsError,
    StructureError,
)
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate
from brachycryo.cryo_iceball.config import load_config
from brachycryo.cryo_iceball.tissue import load_tissues
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rasterize import roi_mask, roi_volume_cc
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.phantoms import build_phantom, write_phantom
from brachycryo.phantoms.anatomy import SITES
from brachycryo.planning.cryo_case import (
    ISOTHERM_RTSTRUCT_NAME,
    isotherm_roi_name,
    load_ct_case,
    oar_min_distances_mm,
    simulation_grid,
)

CT_SPACING_MM = (1.5, 1.5, 2.0)
PROBE_TIP_MM = (36.0, 34.0, -11.0)  # in GTV_Bulky; the aorta (centre x 18, y 36, r 12) is 6 mm off
AORTA_CENTRE_XY = (18.0, 36.0)

CONFIG = """
[ct]
series = "CT"
rtstruct = "RS.phantom.dcm"
initial_temp_c = 37.0
vessels = ["Aorta"]
oars = ["Kidney_L", "Vertebra"]

[structures]
GTV_Bulky = "tumor"
Kidney_L = "liver"

[grid]
spacing_mm = 1.5
margin_mm = 24

[[probe]]
model = "generic_17g"
tip_mm = [TIP]
direction = [DIR]

[[protocol]]
phase = "freeze"
minutes = 10
"""


def _config_text(tip=PROBE_TIP_MM, direction=(0.0, 0.0, 1.0)) -> str:
    return CONFIG.replace("TIP", ", ".join(map(str, tip))).replace(
        "DIR", ", ".join(map(str, direction))
    )


def _write_case(folder: Path, grid: Grid) -> Path:
    case = build_phantom(seed=0, site="abdomen", grid=grid)
    write_phantom(folder, case)
    return folder


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cryo_ct")
    grid = Grid.from_bounds((0, -20, -40), (100, 70, 40), CT_SPACING_MM)
    case = build_phantom(seed=0, site="abdomen", grid=grid)
    write_phantom(folder, case)
    (folder / "case.toml").write_text(_config_text())
    return folder, case


def _cli(argv):
    from brachycryo.cli import iceball

    p = argparse.ArgumentParser()
    iceball.register(p.add_subparsers())
    args = p.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def cli_run(patient):
    folder, _ = patient
    out = folder / "out"
    assert _cli(["iceball", str(folder / "case.toml"), "--out", str(out), "--backend",
                 "numba", "--quiet"]) == 0  # fmt: skip
    return out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def api_runs(patient):
    """The CLI's case through the API, with and without the aorta as a heat sink."""
    folder, _ = patient
    cfg = load_config(folder / "case.toml")
    case = load_ct_case(cfg)
    kw = dict(
        tissues=case.tissues,
        tissue_labels=case.tissue_labels,
        initial_temp_c=cfg.initial_temp_c,
        backend="numba",
        options=cfg.options,
    )
    with_v = simulate(case.grid, cfg.probes, cfg.phases, vessel_mask=case.vessel_mask, **kw)
    without = simulate(case.grid, cfg.probes, cfg.phases, **kw)
    return cfg, case, with_v, without


def test_grid_is_the_ct_cropped_and_resampled(patient, api_runs):
    _, phantom = patient
    cfg, case, _, _ = api_runs
    g = case.grid
    assert g.spacing_mm == (1.5, 1.5, 1.5)
    assert np.allclose(g.direction_matrix, phantom.grid.direction_matrix)
    a, b = cfg.probes[0].active_segment_mm()
    lo, hi = g.bounds_mm()
    # the active zone plus the margin (24 mm) fits, unless the CT ends first
    ct_lo, ct_hi = phantom.grid.bounds_mm()
    for p in (a, b):
        assert np.all(
            (lo <= np.maximum(p - 24 + 1.5, ct_lo)) & (hi >= np.minimum(p + 24 - 1.5, ct_hi))
        )
    assert np.all(lo >= ct_lo - 1e-6) and np.all(hi <= ct_hi + 1e-6)


def test_label_map_uses_hu_classes_and_overrides(patient, api_runs):
    _, phantom = patient
    _, case, _, _ = api_runs
    names = np.array([t.name for t in case.tissues])
    lab = names[case.tissue_labels]
    gtv = roi_mask(case.structures.roi("GTV_Bulky"), case.grid)
    kidney = roi_mask(case.structures.roi("Kidney_L"), case.grid)
    vertebra = roi_mask(case.structures.roi("Vertebra"), case.grid)
    assert gtv.sum() > 1000 and kidney.sum() > 1000 and vertebra.sum() > 100
    assert np.all(lab[gtv] == "tumor")
    assert np.all(lab[kidney] == "liver")
    # bone HU (550) with no sourced bone row in the packaged table -> soft tissue
    assert np.all(lab[vertebra & ~gtv & ~kidney] == "soft_tissue")
    assert case.tissue_voxels["tumor"] == gtv.sum()
    assert set(lab.ravel()) == {"tumor", "liver", "soft_tissue"}


def test_user_bone_row_separates_bone_by_hu(patient, tmp_path):
    folder, _ = patient
    # a test-only row (the values are the soft-tissue row's; only the class is checked)
    rows = (Path(__file__).resolve().parents[2] / "cryo_iceball/data/tissues.csv").read_text()
    header = next(ln for ln in rows.splitlines() if ln.startswith("tissue,"))
    soft = next(ln for ln in rows.splitlines() if ln.startswith("soft_tissue,"))
    (tmp_path / "tissues.csv").write_text(f"{header}\nbone{soft[len('soft_tissue') :]}\n")
    text = (folder / "case.toml").read_text()
    text = text.replace('series = "CT"', f'series = "{folder / "CT"}"')
    text = text.replace('rtstruct = "RS.phantom.dcm"', f'rtstruct = "{folder / "RS.phantom.dcm"}"')
    text += '\n[catalogue]\ntissues = "tissues.csv"\n'
    (tmp_path / "c.toml").write_text(text)
    case = load_ct_case(load_config(tmp_path / "c.toml"))
    names = np.array([t.name for t in case.tissues])
    vertebra = roi_mask(case.structures.roi("Vertebra"), case.grid)
    assert np.mean(names[case.tissue_labels][vertebra] == "bone") > 0.9


def _extent_mm(mask: np.ndarray, grid: Grid, centre, direction) -> float:
    """How far the mask reaches from ``centre`` along ``direction`` (first gap ends it)."""
    steps = np.arange(0.0, 40.0, 0.1)
    pts = np.asarray(centre) + steps[:, None] * np.asarray(direction)
    inside = grid.sample_nearest(mask, pts, outside=False)
    return float(steps[np.argmin(inside)]) if not inside.all() else 40.0


def test_vessel_heat_sink_deforms_the_ice_ball(api_runs):
    cfg, case, with_v, without = api_runs
    centre = np.array([PROBE_TIP_MM[0], PROBE_TIP_MM[1], 0.0])
    toward = np.array([AORTA_CENTRE_XY[0], AORTA_CENTRE_XY[1], 0.0]) - centre
    toward /= np.linalg.norm(toward)
    ext = {}
    for name, res in (("with", with_v), ("without", without)):
        ice = res.isotherm_mask(0.0)
        ext[name] = (_extent_mm(ice, case.grid, centre, toward),
                     _extent_mm(ice, case.grid, centre, -toward))  # fmt: skip
    # without the vessel: near-symmetric (uniform soft-tissue parameters in this plane)
    assert abs(ext["without"][0] - ext["without"][1]) <= 2.0, ext
    # with it: the ice stops at the aorta wall (~6 mm) on its side; the far side is unchanged
    assert ext["with"][0] < ext["without"][0] - 3.0, ext
    assert ext["with"][0] < ext["with"][1] - 3.0, ext
    aorta_wall_mm = math.dist(AORTA_CENTRE_XY, PROBE_TIP_MM[:2]) - 12.0
    assert ext["with"][0] <= aorta_wall_mm + 1.5, ext
    assert abs(ext["with"][1] - ext["without"][1]) <= 1.5, ext
    assert np.all(with_v.final_temp_c[case.vessel_mask] == pytest.approx(37.0))


def test_cli_outputs_and_isotherm_rtstruct(patient, cli_run, dciodvfy):
    folder, _ = patient
    out, summary = cli_run
    assert set(summary) == {"isotherms", "lethal_isotherm_c", "oar_min_distance_mm"}
    assert set(summary["oar_min_distance_mm"]) == {"Kidney_L", "Vertebra"}
    for name in ("slice_axial", "slice_coronal", "slice_sagittal", "volume_vs_time"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    ct = load_ct_series(folder / "CT")
    rs = read_rtstruct(out / ISOTHERM_RTSTRUCT_NAME)
    assert rs.frame_of_reference_uid == ct.frame_of_reference_uid
    assert rs.referenced_series_uid == ct.series_instance_uid
    assert rs.referenced_sop_instance_uids == set(ct.sop_instance_uids)
    for roi in rs.rois:
        assert {c.referenced_sop_instance_uid for c in roi.contours} <= set(ct.sop_instance_uids)
    for key, iso in summary["isotherms"].items():
        roi = rs.roi(isotherm_roi_name(float(key)))
        assert roi.interpreted_type == ("TREATED_VOLUME" if key == "-40" else "CONTROL")
        assert roi_volume_cc(roi) == pytest.approx(iso["volume_ml"], rel=0.04), key
        mask_ml = roi_mask(roi, ct.grid).sum() * ct.grid.voxel_volume_mm3 / 1000
        assert mask_ml == pytest.approx(iso["volume_ml"], rel=0.04), key
    assert summary["isotherms"]["0"]["volume_ml"] > summary["isotherms"]["-40"]["volume_ml"] > 0
    info = json.loads((out / "run_info.json").read_text())
    assert info["ct"]["frame_of_reference_uid"] == ct.frame_of_reference_uid
    assert info["tissue_voxels"]["tumor"] > 0
    errors, _ = dciodvfy(out / ISOTHERM_RTSTRUCT_NAME)
    assert errors == []
    _check_page(out / "iceball.html", ct, summary)
    with pytest.raises(OutputExistsError):
        _cli(["iceball", str(folder / "case.toml"), "--out", str(out), "--quiet"])


def _check_page(path, ct, summary):
    """iceball.html: the viewer over the patient CT with the OARs and the temperature."""
    import re

    from brachycryo.reports.viewer import inplane_factor

    page = path.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="bc-data">(.*?)</script>', page).group(1))
    f = inplane_factor(ct.grid.shape)
    nk, nj, ni = ct.grid.shape
    assert data["ct"]["shape"] == [nk, nj // f, ni // f]
    assert {ly["name"] for ly in data["layers"]} == set(summary["oar_min_distance_mm"])
    assert data["field"]["name"] == "temperature" and data["levels"] == [0.0, -20.0, -40.0]
    assert data["dose"]["offset"] < -40.0 and "no CT" not in page
    assert len(page) < 30e6


def test_oar_distances_against_brute_force(patient, cli_run, api_runs):
    _, phantom = patient
    _, summary = cli_run
    _, case, with_v, _ = api_runs
    ice = with_v.isotherm_mask(0.0)
    ice_pts = case.grid.ijk_to_mm(np.argwhere(ice)[:, ::-1].astype(float))
    got = oar_min_distances_mm(ice, case.grid, case.oar_masks_ct, phantom.grid)
    for name in ("Kidney_L", "Vertebra"):
        # every pair of voxel centres: the RTSTRUCT's mask, and the phantom's own voxels
        for oar in (case.oar_masks_ct[name], phantom.masks[name]):
            pts = phantom.grid.ijk_to_mm(np.argwhere(oar)[:, ::-1].astype(float))
            brute = float(cdist(ice_pts, pts).min())
            assert got[name] == pytest.approx(brute, abs=1e-6 if oar is not phantom.masks[name]
                                              else phantom.grid.spacing_mm[2])  # fmt: skip
        assert summary["oar_min_distance_mm"][name] == pytest.approx(got[name], abs=0.01)
        assert 2.0 < got[name] < 30.0


def test_oar_overlapping_the_ice_is_at_zero(api_runs):
    _, case, with_v, _ = api_runs
    ice = with_v.isotherm_mask(0.0)
    gtv_ct = roi_mask(case.structures.roi("GTV_Bulky"), case.ct.grid)
    assert oar_min_distances_mm(ice, case.grid, {"GTV": gtv_ct}, case.ct.grid) == {"GTV": 0.0}
    empty = np.zeros(case.ct.grid.shape, dtype=bool)
    assert oar_min_distances_mm(ice, case.grid, {"none": empty}, case.ct.grid) == {"none": None}


def _bad(folder: Path, tmp_path: Path, text: str) -> Path:
    text = text.replace('series = "CT"', f'series = "{folder / "CT"}"')
    text = text.replace('rtstruct = "RS.phantom.dcm"', f'rtstruct = "{folder / "RS.phantom.dcm"}"')
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda t: t.replace('vessels = ["Aorta"]', 'vessels = ["Aorat"]'), StructureError,
         r"Aorat.*ROIs present: \['BODY'"),
        (lambda t: t.replace('GTV_Bulky = "tumor"', 'GTV = "tumor"'), StructureError,
         r"\[ROI 'GTV'\].*GTV_Bulky"),
        (lambda t: t.replace('oars = ["Kidney_L", "Vertebra"]', 'oars = ["Cord"]'), StructureError,
         "Cord"),
        (lambda t: t.replace("[36.0, 34.0, -11.0]", "[36.0, 34.0, 30.0]"), GeometryError,
         "outside the CT"),
        (lambda t: t.replace("[36.0, 34.0, -11.0]", "[18.0, 36.0, -11.0]"), GeometryError,
         "vessel 'Aorta'"),
    ],
)  # fmt: skip
def test_bad_inputs_name_the_problem(patient, tmp_path, edit, error, match):
    folder, _ = patient
    with pytest.raises(error, match=match):
        load_ct_case(load_config(_bad(folder, tmp_path, edit(_config_text()))))


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace('Kidney_L = "liver"', 'Kidney_L = "kidney"'), "structures.Kidney_L"),
        (lambda t: t.replace('rtstruct = "RS.phantom.dcm"', 'rtstruct = "RS.nope.dcm"'),
         "ct.rtstruct"),
        (lambda t: t.replace('series = "CT"', 'series = "noCT"'), "ct.series"),
        (lambda t: '[medium]\ntissue = "gel"\n' + t, "ct"),
        (lambda t: t[t.index("[structures]") :], "medium"),
        (lambda t: t.replace("vessels = [", "vessels = [1, "), "ct.vessels"),
        (lambda t: t.replace("initial_temp_c = 37.0", "initial_temp = 37.0"), "[ct].initial_temp"),
    ],
)  # fmt: skip
def test_bad_config_names_the_key(patient, edit, key):
    folder, _ = patient
    p = folder / f"bad_{abs(hash(key))}.toml"
    p.write_text(edit(_config_text()))
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert exc.value.key == key


def test_frame_of_reference_mismatch(patient, tmp_path):
    folder, phantom = patient
    other = tmp_path / "other"
    write_phantom(other, phantom)  # same anatomy, new Frame of Reference UID
    text = _config_text().replace('rtstruct = "RS.phantom.dcm"',
                                  f'rtstruct = "{other / "RS.phantom.dcm"}"')  # fmt: skip
    text = text.replace('series = "CT"', f'series = "{folder / "CT"}"')
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(FrameOfReferenceError):
        load_ct_case(load_config(tmp_path / "c.toml"))


def test_probe_outside_ct_grid_directly():
    from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue

    grid = Grid.from_bounds((0, 0, 0), (50, 50, 50), 2.0)
    probe = Probe(load_probe_catalogue()["generic_17g"], (25, 25, 40), (0, 0, 1))
    with pytest.raises(GeometryError, match="outside the CT"):
        simulation_grid(grid, [probe], spacing_mm=1.0, margin_mm=10)


def test_oblique_ct(tmp_path, patient):
    """A CT tilted 20 deg about two axes: same anatomy, same ice ball, RTSTRUCT on its slices.

    A 2.4 mm probe on a 1 mm grid: the 17G probe on these grids changes its ice volume by
    10-25 % with its sub-voxel position (solver resolution), which would hide the geometry.
    """
    folder_al, _ = patient
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array([[1, 0, 0], [0, c, -s],
                                                                    [0, s, c]])  # fmt: skip
    centre = np.array([40.0, 30.0, 0.0])
    shape = (36, 56, 56)  # k, j, i
    sp = np.array([1.5, 1.5, 2.0])
    origin = centre - rot @ ((np.array(shape[::-1]) - 1) * sp / 2)
    grid = Grid(shape=shape, origin_mm=origin, spacing_mm=sp, direction=rot.reshape(-1))
    folder = _write_case(tmp_path / "obl", grid)
    text = (
        _config_text(tip=(36.0, 34.0, -20.0))
        .replace("generic_17g", "generic_2p4mm")
        .replace("spacing_mm = 1.5", "spacing_mm = 1.0")
        .replace("margin_mm = 24", "margin_mm = 14")
        .replace("minutes = 10", "minutes = 4")
    )
    summaries = {}
    for name, where in (("oblique", folder), ("aligned", folder_al)):
        (where / "obl.toml").write_text(text)
        out = tmp_path / f"out_{name}"
        assert _cli(["iceball", str(where / "obl.toml"), "--out", str(out), "--backend",
                     "numba", "--quiet"]) == 0  # fmt: skip
        summaries[name] = json.loads((out / "summary.json").read_text())
    ct = load_ct_series(folder / "CT")
    assert not ct.grid.is_axis_aligned()
    cfg = load_config(folder / "obl.toml")
    sim = simulation_grid(ct.grid, cfg.probes, spacing_mm=1.0, margin_mm=14)
    assert np.allclose(sim.direction_matrix, ct.grid.direction_matrix)
    rs = read_rtstruct(tmp_path / "out_oblique" / ISOTHERM_RTSTRUCT_NAME)
    assert rs.frame_of_reference_uid == ct.frame_of_reference_uid
    assert rs.referenced_sop_instance_uids == set(ct.sop_instance_uids)
    obl, ref = summaries["oblique"], summaries["aligned"]
    for key, iso in obl["isotherms"].items():
        roi = rs.roi(isotherm_roi_name(float(key)))
        assert roi_volume_cc(roi) == pytest.approx(iso["volume_ml"], rel=0.05), key
        # the same patient and probe as on the axis-aligned CT: the same ice ball
        assert iso["volume_ml"] == pytest.approx(ref["isotherms"][key]["volume_ml"], rel=0.05)
        assert iso["axes_mm"] == pytest.approx(ref["isotherms"][key]["axes_mm"], abs=1.5)
    for oar, d in obl["oar_min_distance_mm"].items():
        assert d == pytest.approx(ref["oar_min_distance_mm"][oar], abs=1.5), oar


def test_medium_form_unchanged():
    tissues = load_tissues()
    assert "bone" not in tissues and "fat" not in tissues  # no sourced values: see tissue.py


def test_example_configs(patient, tmp_path):
    examples = Path(__file__).resolve().parents[2] / "cryo_iceball" / "examples"
    gel = load_config(examples / "gel_two_probes.toml")
    assert gel.ct is None and gel.tissue.name == "gel" and len(gel.probes) == 2
    # the CT example beside a phantom's CT/ and RS.phantom.dcm: its names are those of the
    # phantom's ROIs and its probes lie in the bulky mass
    folder, phantom = patient
    (folder / "phantom_ct.toml").write_text((examples / "phantom_ct.toml").read_text())
    cfg = load_config(folder / "phantom_ct.toml")
    anatomy = SITES["abdomen"](np.random.default_rng(0))
    rois = {o.name for o in (*anatomy.organs, *anatomy.tumours) if o.roi}
    named = {r for r, _ in cfg.ct.structures} | set(cfg.ct.vessels) | set(cfg.ct.oars)
    assert named <= rois
    for probe in cfg.probes:
        a, b = (np.asarray(p) for p in probe.active_segment_mm())
        pts = a + np.linspace(0, 1, 12)[:, None] * (b - a)
        assert phantom.grid.sample_nearest(phantom.masks["GTV_Bulky"], pts).all()


def test_solver_is_invariant_under_rotating_grid_and_probes():
    """The solver on an oblique grid: rotating grid, probe and vessel together changes nothing."""
    from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol

    c, s = math.cos(math.radians(25)), math.sin(math.radians(25))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, c, -s],
                                                                    [0, s, c]])  # fmt: skip
    probe_model = load_probe_catalogue()["generic_2p4mm"]
    tis = load_tissues()
    results = []
    for r in (np.eye(3), rot):
        grid = Grid(shape=(20, 22, 24), origin_mm=r @ np.array([-11.5, -10.5, -9.5]),
                    spacing_mm=(1.0, 1.0, 1.0), direction=r.reshape(-1))  # fmt: skip
        probe = Probe(probe_model, tuple(r @ np.array([0.3, -0.2, -6.0])),
                      tuple(r @ np.array([0.1, 0.2, 1.0])))  # fmt: skip
        labels = np.zeros(grid.shape, dtype=np.int8)
        labels[:, :, 15:] = 1
        vessel = np.zeros(grid.shape, dtype=bool)
        vessel[:, 3, 4] = True
        results.append(
            simulate(
                grid,
                [probe],
                protocol(("freeze", 1.0)),
                tissues=[tis["soft_tissue"], tis["liver"]],
                tissue_labels=labels,
                vessel_mask=vessel,
                backend="numba",
                options=BioheatOptions(dtype="float64"),
            )
        )
    # (the fitted Robin probe of issue 15 runs at about -100 C in this first minute)
    assert results[0].min_temp_c.min() < -90
    np.testing.assert_allclose(results[1].min_temp_c, results[0].min_temp_c, atol=1e-6)
