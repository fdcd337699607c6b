"""DVHs of analytic structures in analytic dose fields, read from real RTSTRUCT + RTDOSE files.

The cases and their closed-form DVHs are derived in :mod:`tests.qa.analytic_dvh` (after
Nelms et al., Med Phys 42:4435, 2015).  Two references:

* the **ideal shape** (sphere, cylinder, cone): volumes must be within 1 % (>= 5 cc) and
  3 % (0.5-5 cc), and for >= 5 cc structures D90, D98 and V100 within 1 %;
* the **structure as contoured** (:class:`ContouredDVH`: each contour's slab, exact
  cross-sections): a sphere drawn on 2 mm slices is a stack of discs, and its D98 in a
  radial field differs from the ideal sphere's by up to 4 % for 0.7 cc - that is the
  contouring, not the DVH engine, so the engine is held to the shape it is given.

What the dose grid itself limits.  The RTDOSE holds the field only at its voxel centres
and the DVH interpolates trilinearly, which in a curved field is biased: on average
``(h^2 / 12) * laplacian(D)`` for spacing h (the mean error of linear interpolation of a
parabola over a cell, summed over the three axes).  For the radial fields
``D = A / (r^2 + a^2)`` the relative Laplacian is ``(8 r^2 - 6 u) / u^2`` (3-D, u = r^2 + a^2)
or ``(8 rho^2 - 4 u) / u^2`` (about a line), so Dx is expected low by ``b(r_x)`` and V100 by
``k * b(r_rx)`` with the DVH's dose sensitivity ``k = |dlnV / dlnD|`` = ``3 u / (2 r^2)``
(sphere) or ``u / rho^2`` (cylinder) - e.g. ``k = 7.4`` for the 0.7 cc sphere, whose V100
on a 2 mm grid is therefore 8 % low whatever the DVH algorithm.  The test asserts that
our error differs from this dose-grid bias by at most 1 % (plus 15 % of the bias, the
model being first order) for D90, D98 and V100, on 1 and 2 mm grids, axis-aligned and
oblique.  For linear fields (and the >= 5 cc cases, where the bias
is < 0.05 %) that is the plain 1 % criterion.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.qa.dvh import dvh_from_roi
from brachycryo.qa.metrics import dose_at_volume_pct, volume_at_dose_cc
from tests.qa.analytic_dvh import (
    Case,
    ContouredDVH,
    cases,
    ct_grid_for,
    rotation,
    slice_positions,
    write_case_files,
)

CASES = {c.name: c for c in cases()}
OBLIQUE = rotation((1.0, 2.0, 3.0), 25.0)
GRIDS = [(1.0, None), (2.0, None), (2.0, "oblique")]


def _grid_bias_pct(case: Case, r_mm: float, h_mm: float) -> float:
    """Expected relative dose error (%) of trilinear interpolation at radius r (see above)."""
    if case.field == "linear":
        return 0.0
    u = r_mm**2 + case.core_mm**2
    lap = (8 * r_mm**2 - (6 if case.kind == "sphere" else 4) * u) / u**2
    return 100.0 * h_mm**2 / 12.0 * lap


def _expected_bias(case: Case, h_mm: float) -> dict[str, float]:
    if case.field == "linear":
        return {"d90": 0.0, "d98": 0.0, "v100": 0.0}
    out = {}
    for x in (90, 98):
        p = x / 100
        r = case.radius_mm * (p ** (1 / 3) if case.kind == "sphere" else np.sqrt(p))
        out[f"d{x}"] = _grid_bias_pct(case, r, h_mm)
    r_rx = np.sqrt(case.a_gy_mm2 / case.prescription_gy - case.core_mm**2)
    u = r_rx**2 + case.core_mm**2
    k = 1.5 * u / r_rx**2 if case.kind == "sphere" else u / r_rx**2
    out["v100"] = k * _grid_bias_pct(case, r_rx, h_mm)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Our DVH errors (%) for every case and dose grid, against both references."""
    out = {}
    root = tmp_path_factory.mktemp("analytic")
    for case in CASES.values():
        contoured = ContouredDVH(case, slice_positions(ct_grid_for([case])))
        for spacing, orient in GRIDS:
            direction = OBLIQUE if orient else None
            files = write_case_files(
                root / f"{case.name}_{spacing:g}_{orient}", case, spacing, direction=direction
            )
            roi = read_rtstruct(files.rtstruct).rois[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dose = read_rtdose(files.rtdose)
            dvh = dvh_from_roi(roi, dose.dose_gy, dose.grid, slice_thickness_mm=2.0)
            row = {"volume_cc": dvh.volume_cc}
            for label, ref in (("ideal", case), ("contoured", contoured)):
                err = {"volume": 100 * (dvh.volume_cc / ref.volume_cc - 1)}
                for x in (90, 98):
                    exact = ref.dose_at_volume_pct(x)
                    err[f"d{x}"] = 100 * (dose_at_volume_pct(dvh, x) / exact - 1)
                rx = case.prescription_gy
                err["v100"] = 100 * (volume_at_dose_cc(dvh, rx) / ref.volume_at_dose_cc(rx) - 1)
                row[label] = err
            row["grid_bias"] = _expected_bias(case, spacing)
            out[(case.name, spacing, orient)] = row
            print(case.name, spacing, orient or "axial", {k: row[k] for k in row})
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_volume_within_tolerance(results, name):
    case = CASES[name]
    tol = 1.0 if case.volume_cc >= 5 else 3.0
    for (n, spacing, orient), row in results.items():
        if n == name:
            assert abs(row["ideal"]["volume"]) <= tol, (spacing, orient, row["ideal"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_dose_metrics_within_1pct_of_closed_form(results, name):
    case = CASES[name]
    for (n, spacing, orient), row in results.items():
        if n != name:
            continue
        for metric in ("d90", "d98", "v100"):
            err = row["contoured"][metric]
            expected = row["grid_bias"][metric]
            # 1 % plus 15 % of the modelled bias (a first-order model: mean cell error,
            # linearised V(D))
            tol = 1.0 + 0.15 * abs(expected)
            assert abs(err - expected) <= tol, (spacing, orient, metric, err, expected)
            if case.volume_cc >= 5 and metric != "d98":
                # large structures: the plain criterion against the ideal shape (D98 of a
                # sphere contoured on 2 mm slices is ~1 % below the ideal sphere's: the
                # discs of the end slices reach beyond it; held to the contoured shape)
                assert abs(row["ideal"][metric]) <= 1.0, (spacing, orient, metric, row["ideal"])


def test_grid_bias_model_is_not_vacuous(results):
    """The dose-grid allowance matters only where the field is curved and the grid coarse."""
    small_radial = results[("sphere_rad_S", 2.0, None)]
    assert small_radial["grid_bias"]["v100"] < -5.0  # the 0.7 cc sphere on 2 mm: ~ -8 %
    assert small_radial["contoured"]["v100"] < -5.0  # and our error shows it
    big = results[("sphere_rad_L", 2.0, None)]
    assert abs(big["grid_bias"]["v100"]) < 0.1


PEER_DVH = r"""
import json, sys
from dicompylercore import dvhcalc
dvh = dvhcalc.get_dvh(sys.argv[1], sys.argv[2], 1)
print(json.dumps({"volume_cc": float(dvh.volume), "d90_gy": float(dvh.statistic("D90").value),
                  "v100_cc": float(dvh.volume_constraint(float(sys.argv[3]), "Gy").value)}))
"""


@pytest.mark.peer
@pytest.mark.parametrize("name", ["sphere_lin_S", "sphere_rad_M", "cone_lin"])
def test_equal_or_better_than_dicompyler_core(tmp_path, dicompyler_peer, name):
    """dicompyler-core 0.5.6 on the same files (2 mm dose grid): errors side by side.

    Its volume is its own trapezoidal contour volume (end caps halved) and its dose
    samples are voxel centres inside the contours, so small structures come out low; the
    full comparison over every case is ``benchmarks/dvh_accuracy.py``.
    """
    case = CASES[name]
    files = write_case_files(tmp_path, case, 2.0)
    rx = case.prescription_gy
    peer = dicompyler_peer(PEER_DVH, files.rtstruct, files.rtdose, rx)
    roi = read_rtstruct(files.rtstruct).rois[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dose = read_rtdose(files.rtdose)
    dvh = dvh_from_roi(roi, dose.dose_gy, dose.grid, slice_thickness_mm=2.0)
    ours = {
        "volume_cc": dvh.volume_cc,
        "d90_gy": dose_at_volume_pct(dvh, 90),
        "v100_cc": volume_at_dose_cc(dvh, rx),
    }
    exact = {
        "volume_cc": case.volume_cc,
        "d90_gy": case.dose_at_volume_pct(90),
        "v100_cc": case.volume_at_dose_cc(rx),
    }
    bias = _expected_bias(case, 2.0)
    for key in exact:
        e_ours = 100 * (ours[key] / exact[key] - 1)
        e_peer = 100 * (peer[key] / exact[key] - 1)
        print(f"{name} {key}: ours {e_ours:+.2f} %, dicompyler-core {e_peer:+.2f} %")
        allowance = {"volume_cc": 0.0, "d90_gy": bias["d90"], "v100_cc": bias["v100"]}[key]
        assert abs(e_ours - allowance) <= max(abs(e_peer - allowance), 1.0), key
