"""Catalogues, rasterisation, isotherm measures, stability check, config and CLI."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachycryo.core.errors import BrachyCryoError, ConfigError, DataModelError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball import bioheat
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate
from brachycryo.cryo_iceball.config import load_config
from brachycryo.cryo_iceball.isotherms import isotherm_key, min_distance_mm, principal_axes
from brachycryo.cryo_iceball.probes import (
    ARGON_JT_TEMP_C,
    Probe,
    cylinder_sdf_mm,
    load_probe_catalogue,
    protocol,
    rasterise_probes,
)
from brachycryo.cryo_iceball.tissue import load_tissues


def test_catalogues_packaged_and_extendable(tmp_path):
    cat = load_probe_catalogue()
    assert cat["generic_17g"].diameter_mm == 1.5
    assert cat["generic_2p4mm"].diameter_mm == 2.4
    extra = tmp_path / "p.csv"
    extra.write_text(
        "model,diameter_mm,active_length_mm,active_offset_mm,freeze_temp_c,freeze_ramp_s,"
        "active_thaw_temp_c,cryogen,notes\nmine,1.7,30,4,-150,10,20,argon,test\n"
    )
    cat2 = load_probe_catalogue(extra)
    assert cat2["mine"].active_offset_mm == 4 and "generic_17g" in cat2
    extra.write_text(extra.read_text().replace("1.7,30", "thin,30"))
    with pytest.raises(DataModelError, match="diameter_mm"):
        load_probe_catalogue(extra)
    tis = load_tissues()
    assert {"gel", "liver", "lung", "soft_tissue"} <= set(tis)
    assert tis["gel"].perfusion_per_s == 0 and tis["liver"].perfusion_per_s > 0


@settings(max_examples=60, deadline=None)
@given(st.floats(-200, 80), st.sampled_from(["gel", "liver", "lung"]))
def test_enthalpy_round_trip(temp_c, name):
    t = load_tissues()[name]
    assert float(t.temp_c(t.enthalpy_j_m3(temp_c))) == pytest.approx(temp_c, abs=1e-9)


def test_enthalpy_holds_latent_heat():
    t = load_tissues()["liver"]
    jump = float(t.enthalpy_j_m3(t.liquidus_c) - t.enthalpy_j_m3(t.solidus_c))
    sensible = 0.5 * (t.c_frozen_vol + t.c_unfrozen_vol) * (t.liquidus_c - t.solidus_c)
    assert jump - sensible == pytest.approx(t.rho_kg_m3 * t.latent_heat_j_kg)


@pytest.mark.parametrize("direction", [(0, 0, 1), (1, 1, 1), (0.3, -1, 0.2)])
def test_rasterised_probe_volume_any_orientation(direction):
    cat = load_probe_catalogue()
    grid = Grid.from_bounds((-24, -24, -24), (24, 24, 24), 0.5)
    d = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    probe = Probe(cat["generic_2p4mm"], tuple(-20 * d + 0.13), direction)
    r = rasterise_probes(grid, [probe], theta_min=1e-9)  # no snapping: plain inside test
    vol = np.count_nonzero(r.held >= 0) * grid.voxel_volume_mm3
    assert vol == pytest.approx(math.pi * 1.2**2 * 40, rel=0.1)
    assert np.all(r.couple_coef_per_m2[r.held >= 0] == 0)


@pytest.mark.parametrize("direction", [(0, 0, 1), (0.3, -1, 0.2)])
def test_thin_probe_between_voxel_centres_holds_an_unbroken_column(direction):
    """A 17G probe (radius 0.75 mm) on a 2 mm grid whose axis avoids the voxel centres
    (axial: the probe holds no voxel centre at all; oblique: only a few).  The held voxels
    form one 26-connected column along the whole active zone, none lies beyond the active
    zone, and the free voxels beside it are coupled to the probe surface."""
    from scipy import ndimage

    cat = load_probe_catalogue()
    model = cat["generic_17g"]
    grid = Grid.from_bounds((-24, -24, -24), (24, 24, 24), 2.0)
    d = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    tip = np.array([1.0, 1.0, 1.0]) - 15 * d  # 1 mm from a centre on every axis
    probe = Probe(model, tuple(tip), tuple(d))
    a, b = probe.active_segment_mm()
    centres = grid.voxel_centres_mm()
    n_inside = np.count_nonzero(cylinder_sdf_mm(centres, a, b, model.radius_mm) <= 0)
    assert n_inside == 0 if direction == (0, 0, 1) else n_inside < 11
    r = rasterise_probes(grid, [probe])
    held = r.held >= 0
    _, n_parts = ndimage.label(held, structure=np.ones((3, 3, 3)))
    assert n_parts == 1
    rel = centres[held] - a
    s = rel @ d
    radial = np.linalg.norm(rel - s[:, None] * d, axis=1)
    assert np.all((s >= 0) & (s <= model.active_length_mm))
    assert np.all(radial <= np.sqrt(3) / 2 * 2.0 + 1e-9)
    assert held.sum() * 2.0 >= model.active_length_mm  # the whole length, at least 1 per 2 mm
    assert np.all(r.couple_probe[r.couple_coef_per_m2 > 0] == 0)
    assert np.count_nonzero(r.couple_coef_per_m2 > 0) >= 2 * model.active_length_mm / 2.0


def test_probe_outside_grid_is_an_error():
    cat = load_probe_catalogue()
    grid = Grid.from_bounds((-5, -5, -5), (5, 5, 5), 1.0)
    with pytest.raises(GeometryError, match="holds no voxel: its active zone lies outside"):
        rasterise_probes(grid, [Probe(cat["generic_17g"], (50, 0, 0), (0, 0, 1))])


def test_principal_axes_of_rotated_ellipsoid():
    grid = Grid.from_bounds((-25, -25, -25), (25, 25, 25), 0.5)
    rot = np.linalg.qr(np.array([[1.0, 0.3, 0.2], [0.1, 1.0, -0.4], [0.5, 0.2, 1.0]]))[0]
    semi = np.array([6.0, 10.0, 18.0])
    rel = grid.voxel_centres_mm() @ rot
    mask = np.sum((rel / semi) ** 2, axis=-1) <= 1
    ax = principal_axes(mask, grid)
    np.testing.assert_allclose(ax.axes_mm, 2 * semi, atol=0.3)
    assert abs(abs(ax.directions[:, 2] @ rot[:, 2]) - 1) < 1e-3


def test_min_distance_between_spheres():
    grid = Grid.from_bounds((-20, -10, -10), (20, 10, 10), 0.5)
    c = grid.voxel_centres_mm()
    a = np.linalg.norm(c - (-8, 0, 0), axis=-1) <= 5
    b = np.linalg.norm(c - (9, 0, 0), axis=-1) <= 4
    assert min_distance_mm(a, b, grid) == pytest.approx(17 - 9, abs=0.6)
    assert min_distance_mm(a, a, grid) == 0.0


def test_isotherm_keys():
    assert [isotherm_key(t) for t in (0.0, -0.0, -20, -2.5)] == ["0", "0", "-20", "-2.5"]


def test_time_step_limit_is_what_keeps_it_stable(monkeypatch):
    cat = load_probe_catalogue()
    grid = Grid.from_bounds((-8, -8, -8), (8, 8, 8), 1.0)
    probe = Probe(cat["generic_17g"], (0.2, 0.1, -10), (0, 0, 1))
    args = ([probe], protocol(("freeze", 0.5)))
    kw = dict(tissues=[load_tissues()["gel"]], backend="numba")
    simulate(grid, *args, **kw)  # at the limit: fine
    real = bioheat.stable_time_step_s
    monkeypatch.setattr(bioheat, "stable_time_step_s", lambda *a, **k: 2.5 * real(*a, **k))
    with pytest.raises(BrachyCryoError, match="unstable"):
        simulate(grid, *args, **kw)
    with pytest.raises(ConfigError):
        BioheatOptions(safety=1.5)


CASE = """
[medium]
tissue = "gel"
initial_temp_c = 39.0
[grid]
spacing_mm = 1.0
margin_mm = 12
[[probe]]
model = "generic_17g"
tip_mm = [0.0, 0.0, -11.0]
direction = [0.0, 0.0, 1.0]
[[protocol]]
phase = "freeze"
minutes = 1.5
[[oar]]
name = "rectum"
centre_mm = [0, 12, 0]
size_mm = [6, 4, 6]
[[vessel]]
start_mm = [-20, -10, -20]
end_mm = [20, -10, 20]
radius_mm = 2
"""


def test_vessel_is_a_heat_sink(tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CASE)
    cfg = load_config(cfg_path)
    vm = cfg.vessel_mask()
    assert vm.any()
    cat = cfg.probes
    kw = dict(tissues=[cfg.tissue], initial_temp_c=39.0, backend="numba")
    with_v = simulate(cfg.grid, cat, cfg.phases, vessel_mask=vm, **kw)
    without = simulate(cfg.grid, cat, cfg.phases, **kw)
    assert np.all(with_v.final_temp_c[vm] == pytest.approx(37.0))
    near = (~vm) & (np.abs(with_v.final_temp_c - without.final_temp_c) > 0)
    assert near.any()
    assert np.count_nonzero(with_v.min_temp_c <= 0) <= np.count_nonzero(without.min_temp_c <= 0)


def _cli(argv):
    from brachycryo.cli import iceball

    p = argparse.ArgumentParser()
    iceball.register(p.add_subparsers())
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_writes_summary_and_pngs(tmp_path):
    cfg = tmp_path / "case.toml"
    cfg.write_text(CASE)
    out = tmp_path / "out"
    assert _cli(["iceball", str(cfg), "--out", str(out), "--backend", "numba", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"isotherms", "lethal_isotherm_c", "oar_min_distance_mm"}
    assert set(summary["isotherms"]) == {"0", "-20", "-40"}
    assert summary["lethal_isotherm_c"] == -40.0
    for iso in summary["isotherms"].values():
        assert iso["axes_mm"] == sorted(iso["axes_mm"]) and iso["volume_ml"] > 0
    assert summary["isotherms"]["0"]["volume_ml"] > summary["isotherms"]["-40"]["volume_ml"]
    assert 0 <= summary["oar_min_distance_mm"]["rectum"] < 12
    for name in ("slice_axial", "slice_coronal", "slice_sagittal", "volume_vs_time"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "iceball.html").read_text(encoding="utf-8")
    assert 'id="bc-data"' in page and "default-src 'none'" in page and "no CT" in page
    assert "Isotherms (\\u00b0C)" in page and "-40 °C (lethal)" in page  # JSON escapes °
    from brachycryo.core.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        _cli(["iceball", str(cfg), "--out", str(out), "--backend", "numba", "--quiet"])
    assert _cli(["iceball", str(cfg), "--out", str(out), "--quiet", "--backend", "numba",
                 "--overwrite", "--isotherm", "-10", "--isotherm", "0"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["isotherms"]) == {"0", "-10", "-40"}  # lethal isotherm always reported


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        (lambda s: 'ct = "ct_dir"\n' + s, "ct", "not both"),
        (lambda s: s.replace('"generic_17g"', '"nope"'), "probe[0].model", "unknown probe"),
        (lambda s: s.replace('"freeze"', '"boil"'), "protocol[0].phase", "unknown phase"),
        (lambda s: s.replace('tissue = "gel"', 'tissue = "bone"'), "medium.tissue", "bone"),
        (lambda s: s.replace("spacing_mm = 1.0", "spacing = 1.0"), "[grid].spacing", "unknown"),
        (lambda s: s.replace("[0.0, 0.0, 1.0]", "[0.0, 1.0]"), "probe[0].direction", "3 numbers"),
    ],
)
def test_config_errors_name_the_key(tmp_path, edit, key, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(edit(CASE))
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(cfg)
    assert exc.value.key == key


def test_probe_boundary_by_phase_and_ramp():
    from dataclasses import replace

    cat = load_probe_catalogue()
    # the Dirichlet mode (the packaged probes are Robin since issue 15: see below)
    m = replace(cat["generic_17g"], cooling_h_w_m2k=0.0)
    assert m.boundary_temp_c("freeze", 0.0, 37.0) == m.freeze_temp_c  # step (no ramp data)
    assert math.isnan(m.boundary_temp_c("passive_thaw", 5.0, 37.0))  # boundary switched off
    assert m.boundary_temp_c("active_thaw", 5.0, 37.0) == m.active_thaw_temp_c

    ramped = replace(m, freeze_ramp_s=30.0)
    t = ramped.boundary_temp_c("freeze", 30.0, 37.0)
    assert t == pytest.approx(-140.0 + 177.0 * math.exp(-1.0))
    # Robin (the packaged model): the freeze phase gives the cryogen temperature, ramped
    # the same way; the solver sets the surface from the heat balance
    robin = cat["generic_17g"]
    assert robin.is_robin and robin.boundary_temp_c("freeze", 0.0, 37.0) == ARGON_JT_TEMP_C
    t = replace(robin, freeze_ramp_s=30.0).boundary_temp_c("freeze", 30.0, 37.0)
    assert t == pytest.approx(ARGON_JT_TEMP_C + (37.0 - ARGON_JT_TEMP_C) * math.exp(-1.0))
    assert math.isnan(robin.boundary_temp_c("passive_thaw", 5.0, 37.0))
    with pytest.raises(ConfigError):
        protocol(("boil", 3))


def test_hu_classes():
    from brachycryo.cryo_iceball.tissue import classes_from_hu

    labels, names = classes_from_hu(np.array([-900.0, -600.0, -100.0, 40.0, 1000.0]))
    assert [names[v] for v in labels] == [
        "lung",
        "lung",
        "soft_tissue",
        "soft_tissue",
        "soft_tissue",
    ]


def test_hu_classes_with_fat_and_bone_rows_and_overrides():
    from brachycryo.cryo_iceball.tissue import classes_from_hu, tissue_label_map

    hu = np.array([-900.0, -200.0, -31.0, -30.0, 299.0, 300.0, 1200.0])
    labels, names = classes_from_hu(hu, fat="fat", bone="bone")
    assert [names[v] for v in labels] == [
        "lung", "fat", "fat", "soft_tissue", "soft_tissue", "bone", "bone"
    ]  # fmt: skip
    table = load_tissues()
    # packaged table: no fat or bone rows (no sourced values) -> soft tissue
    labels, tissues, counts = tissue_label_map(hu, table)
    assert [tissues[v].name for v in labels] == ["lung"] + ["soft_tissue"] * 6
    assert counts == {"soft_tissue": 6, "lung": 1}
    # a user table with a bone row separates bone; overrides win, the later one on overlaps
    table = dict(table, bone=replace(table["soft_tissue"], name="bone"))
    first = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    second = np.array([0, 0, 1, 1, 0, 0, 0], dtype=bool)
    labels, tissues, counts = tissue_label_map(
        hu, table, overrides=[("liver", first), ("gel", second)]
    )
    assert [tissues[v].name for v in labels] == [
        "liver", "liver", "gel", "gel", "soft_tissue", "bone", "bone"
    ]  # fmt: skip
    assert counts["bone"] == 2 and counts["lung"] == 0
    with pytest.raises(DataModelError, match="nope"):
        tissue_label_map(hu, table, overrides=[("nope", first)])
