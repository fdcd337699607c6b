"""HDR/PDR plans (issue 14.4): dwell positions of one stepping source are not seeds.

The HDR plan is written here by hand in the encoding of PS3.3 C.8.8.15 (one Ir-192 source,
channels of STEPWISE control points, cumulative time weights): S_K x total dwell time must
equal the TotalReferenceAirKerma the file states, and no total S_K is summed over dwells.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pydicom
import pytest

from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.rtplan import BrachySource, read_rtplan, seed_implant, write_seed_rtplan
from brachycryo.dicom_io.summary import summarise_folder

IR192_SK_U = 40_700.0  # a 10 Ci Ir-192 HDR source, about 4.07e4 U
DWELL_S = (4.0, 7.5, 12.0)  # dwell times of the three positions of each channel


def write_hdr_plan(path, treatment_type="HDR") -> None:
    """Three channels x three dwell positions 5 mm apart, cumulative weights 0, t1, t1,
    t1 + t2, ... (two control points per dwell), Ir-192 source."""
    pos = np.array([[x, 0.0, z] for x in (0.0, 10.0, 20.0) for z in (0.0, 5.0, 10.0)])
    src = BrachySource(sk_u=1.0, reference_datetime=dt.datetime(2026, 1, 1), model="6711")
    plan = seed_implant(pos, [1, 1, 1, 2, 2, 2, 3, 3, 3], source=src,
                        referenced_structure_set_uid="1.2.3")  # fmt: skip
    write_seed_rtplan(path, plan, context=StudyContext())
    ds = pydicom.dcmread(path)
    ds.BrachyTreatmentTechnique = "INTERSTITIAL"
    ds.BrachyTreatmentType = treatment_type
    ds.TreatmentMachineSequence[0].TreatmentMachineName = "microSelectron"
    s = ds.SourceSequence[0]
    s.SourceIsotopeName, s.SourceIsotopeHalfLife = "Ir-192", "73.83"
    s.SourceModelID, s.SourceManufacturer = "mHDR-v2", "Nucletron"
    s.ReferenceAirKermaRate = f"{IR192_SK_U:g}"
    total = sum(DWELL_S)
    setup = ds.ApplicationSetupSequence[0]
    for ch in setup.ChannelSequence:
        ch.SourceMovementType = "STEPWISE"
        ch.ChannelTotalTime = f"{total:g}"
        ch.FinalCumulativeTimeWeight = f"{total:g}"
        cum = np.concatenate([[0.0], np.cumsum(DWELL_S)])
        for m, cp in enumerate(ch.BrachyControlPointSequence):
            cp.CumulativeTimeWeight = f"{cum[(m + 1) // 2]:g}"
    setup.TotalReferenceAirKerma = f"{IR192_SK_U * 3 * total / 3600.0:.6g}"
    ds.save_as(path)


def test_hdr_plan_reads_as_dwell_positions_of_one_source(tmp_path):
    path = tmp_path / "RP.hdr.dcm"
    write_hdr_plan(path)
    plan = read_rtplan(path)
    assert plan.is_afterloader and plan.n_seeds == 9
    np.testing.assert_allclose(plan.dwell_times_s, np.tile(DWELL_S, 3))
    summary = plan.summary()
    assert summary["total_sk_u"] is None  # no sum of one source's strength over its dwells
    # S_K x total dwell time (h) = TotalReferenceAirKerma, as the file states it
    total_kerma = IR192_SK_U * np.nansum(plan.treatment_times_s) / 3600.0
    assert plan.total_reference_air_kerma == pytest.approx(total_kerma, rel=1e-5)


def test_summary_reports_hdr_and_pdr_plans_as_afterloader_plans(tmp_path, shared_data):
    write_hdr_plan(tmp_path / "RP.hdr.dcm")
    (item,) = summarise_folder(tmp_path)["rtplan"]
    assert item["plan"].startswith("HDR afterloader")
    assert item["n_dwell_positions"] == 9 and item["n_channels"] == 3
    assert item["total_dwell_time_s"] == pytest.approx(3 * sum(DWELL_S))
    assert "total_sk_u" not in item and "n_sources" not in item
    assert item["sources"] == ["#1 Ir-192 mHDR-v2 S_K 40700 U"]
    # real plans: RobustBrachy's HDR and pyTG43's PDR, against the kerma they state
    for name, sk in (("RobustBrachy_PL001_HDR.dcm", 40700.0), ("pyTG43_RP.PDR.dcm", 4070.0)):
        (real,) = summarise_folder(shared_data / "dicom" / "brachy_rtplans" / name)["rtplan"]
        assert "afterloader" in real["plan"] and "total_sk_u" not in real
        assert sk * real["total_dwell_time_s"] / 3600.0 == pytest.approx(
            real["total_reference_air_kerma_ugy_at_1m"], rel=1e-4
        )
