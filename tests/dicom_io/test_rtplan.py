"""Seed-implant RT Plan writer and brachytherapy RT Plan reader.

Every plan we write is validated with dciodvfy (zero ``Error`` lines; warnings are printed
by the fixture).  Real plans from other systems are checked against numbers those files
carry themselves: TotalReferenceAirKerma = sum of S_K x dwell time (x pulses) over all
dwells, and per channel the dwell times add up to ChannelTotalTime.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement

from brachycryo.core.errors import (
    BrachyCryoError,
    DataModelError,
    DicomInputError,
    OutputExistsError,
)
from brachycryo.dicom_io.common import DicomConformanceWarning, StudyContext, new_uid
from brachycryo.dicom_io.rtplan import (
    I125_HALF_LIFE_DAYS,
    BrachyPlan,
    BrachySource,
    SeedSource,
    needle_directions,
    read_rtplan,
    seed_implant,
    write_seed_rtplan,
)

REF_TIME = dt.datetime(2026, 11, 20, 9, 30, 15)


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _source(**kw) -> BrachySource:
    base = dict(
        sk_u=0.508,
        reference_datetime=REF_TIME,
        model="6711",
        manufacturer="GE Healthcare",
        active_length_mm=3.0,
    )
    base.update(kw)
    return BrachySource(**base)


def _needles(n_needles=4, seeds_per_needle=5, axis=(0.0, 0.0, 1.0), seed=0):
    """Seeds on parallel needle tracks along ``axis``, 5 mm apart, with jittered starts."""
    rng = np.random.default_rng(seed)
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    pos, ids = [], []
    for n in range(n_needles):
        entry = 10.123456789 * (n % 3) * u + 9.87654321 * (n // 3) * v + rng.normal(size=3)
        for m in range(seeds_per_needle):
            pos.append(entry + (5.0 * m + 0.25) * axis + np.array([-31.7, 12.9, -104.3]))
            ids.append(n + 1)
    return np.array(pos), ids


@pytest.fixture
def ctx() -> StudyContext:
    return StudyContext()


def _plan(**kw) -> BrachyPlan:
    pos, ids = _needles()
    kw.setdefault("source", _source())
    kw.setdefault("prescription_dose_gy", 145.0)
    kw.setdefault("referenced_structure_set_uid", new_uid())
    return seed_implant(pos, ids, **kw)


# ------------------------------------------------------------------ writing
def test_round_trip_reads_our_plan_exactly(tmp_path, ctx):
    plan = _plan(label="LIVER SEEDS", name="index lesion margin")
    path = tmp_path / "plan.dcm"
    uid = write_seed_rtplan(path, plan, context=ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own plans are conformant: no warning
        back = read_rtplan(path)
    assert back.sop_instance_uid == uid
    assert back.warnings == ()
    assert (back.technique, back.treatment_type) == ("PERMANENT", "LDR")
    assert (back.label, back.name) == ("LIVER SEEDS", "index lesion margin")
    assert back.prescription_dose_gy == 145.0
    assert back.referenced_structure_set_uid == plan.referenced_structure_set_uid
    assert back.frame_of_reference_uid == ctx.frame_of_reference_uid
    assert back.sources == plan.sources  # isotope, half-life, S_K, date, model, maker, length
    assert back.n_seeds == plan.n_seeds
    # DS keeps 16 characters: positions back to ~1e-10 mm; FL orientation to float32
    assert np.max(np.abs(back.positions_mm - plan.positions_mm)) < 1e-9
    assert np.max(np.abs(back.directions - plan.directions)) < 1e-6
    assert np.array_equal(back.channel_numbers, plan.channel_numbers)
    assert np.array_equal(back.sk_u, plan.sk_u)
    assert np.all(np.isnan(back.dwell_times_s))  # permanent seeds have no dwell time
    assert [c.number for c in back.channels] == [1, 2, 3, 4]
    assert {c.movement_type for c in back.channels} == {"FIXED"}


def test_encoding_follows_the_standard(tmp_path, ctx):
    plan = _plan()
    path = tmp_path / "plan.dcm"
    write_seed_rtplan(path, plan, context=ctx)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTPLAN" and ds.RTPlanGeometry == "PATIENT"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.5"
    assert ds.BrachyTreatmentTechnique == "PERMANENT"
    assert ds.BrachyTreatmentType == "LDR"
    (src,) = ds.SourceSequence
    assert src.SourceIsotopeName == "I-125"
    assert float(src.SourceIsotopeHalfLife) == 59.40
    assert float(src.ReferenceAirKermaRate) == 0.508
    assert (src.SourceStrengthReferenceDate, src.SourceStrengthReferenceTime) == (
        "20261120",
        "093015",
    )
    assert src.SourceModelID == "6711" and src.SourceType == "LINE"
    (setup,) = ds.ApplicationSetupSequence
    assert len(setup.ChannelSequence) == 4  # one channel per needle
    mean_life_s = 59.40 * 86400 / math.log(2)  # T½/ln2 = 85.7 d for I-125
    total_kerma = 0.0
    for ch in setup.ChannelSequence:
        cps = ch.BrachyControlPointSequence
        n = len(cps) // 2
        assert int(ch.NumberOfControlPoints) == len(cps) == 2 * n == 10
        assert [int(cp.ControlPointIndex) for cp in cps] == list(range(len(cps)))
        w = np.array([float(cp.CumulativeTimeWeight) for cp in cps])
        assert w[0] == 0 and np.all(np.diff(w) >= 0)  # C.8.8.15.6: cumulative
        assert float(ch.FinalCumulativeTimeWeight) == w[-1]
        # time at each seed = ChannelTotalTime x delta weight / final weight = mean life
        t = float(ch.ChannelTotalTime) * np.diff(w)[::2] / float(ch.FinalCumulativeTimeWeight)
        assert np.allclose(t, mean_life_s, rtol=1e-12)
        pos = np.array([[float(v) for v in cp.ControlPoint3DPosition] for cp in cps])
        assert np.array_equal(pos[::2], pos[1::2])  # one pair per seed position
        rel = np.array([float(cp.ControlPointRelativePosition) for cp in cps])
        assert rel.min() == pytest.approx(0.0, abs=1e-9)
        assert np.allclose(sorted(rel[::2]), [0, 5, 10, 15, 20])
        assert all(len(cp.ControlPointOrientation) == 3 for cp in cps)
        total_kerma += 0.508 * float(ch.ChannelTotalTime) / 3600.0
    assert float(setup.TotalReferenceAirKerma) == pytest.approx(total_kerma, rel=1e-12)
    assert float(setup.TotalReferenceAirKerma) == pytest.approx(
        20 * 0.508 * 59.40 * 24 / math.log(2), rel=1e-12
    )
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == (
        plan.referenced_structure_set_uid
    )
    assert float(ds.DoseReferenceSequence[0].TargetPrescriptionDose) == 145.0
    assert ds.FractionGroupSequence[0].NumberOfBrachyApplicationSetups == 1
    # fresh UIDs, shared study and frame of reference
    assert ds.StudyInstanceUID == ctx.study_instance_uid
    assert ds.FrameOfReferenceUID == ctx.frame_of_reference_uid
    assert len({ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID}) == 3


def _oblique_plan():
    pos, ids = _needles(n_needles=7, seeds_per_needle=3, axis=(0.3, -0.5, 0.8), seed=4)
    pos = np.vstack([pos, [[4.0, 5.0, 6.0]]])
    ids = [*ids, 8]
    dirs = needle_directions(pos[:-1], ids[:-1])
    dirs = np.vstack([dirs, [[0.0, 0.6, 0.8]]])  # a single-seed needle with its own axis
    sources = (_source(), _source(number=2, sk_u=0.71, model="IAI-125A", source_type="CYLINDER"))
    numbers = [1] * 21 + [2]
    return seed_implant(
        pos,
        ids,
        source=sources,
        directions=dirs,
        source_numbers=numbers,
        referenced_structure_set_uid=new_uid(),
    )


@pytest.mark.parametrize(
    "make",
    [
        _plan,
        lambda: _plan(prescription_dose_gy=None, application_setup_type="PERINEAL"),
        _oblique_plan,
    ],
    ids=["prostate_like", "no_prescription", "oblique_two_sources"],
)
def test_dciodvfy_accepts_our_plans(tmp_path, ctx, dciodvfy, make):
    plan = make()
    path = tmp_path / "plan.dcm"
    write_seed_rtplan(path, plan, context=ctx)
    errors, warnings_ = dciodvfy(path)
    assert errors == [], errors
    # a Defined Term of PS3.3 C.8.8.15 (PERINEAL; "OTHER" was none, issue 14.7)
    assert not [w for w in warnings_ if "ApplicationSetupType" in w], warnings_
    assert pydicom.dcmread(path).ApplicationSetupSequence[0].ApplicationSetupType == "PERINEAL"
    back = read_rtplan(path)
    assert np.max(np.abs(back.positions_mm - plan.positions_mm)) < 1e-9
    assert np.max(np.abs(back.directions - plan.directions)) < 1e-6
    assert np.array_equal(back.sk_u, plan.sk_u)


def test_needle_directions_follow_the_track():
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    pos, ids = _needles(n_needles=3, seeds_per_needle=4, axis=axis)
    d = needle_directions(pos, ids)
    assert np.allclose(d, axis, atol=1e-12)
    # reversing the seed order of a needle reverses its direction (first -> last)
    d_rev = needle_directions(pos[::-1], ids[::-1])
    assert np.allclose(d_rev, -axis, atol=1e-12)
    with pytest.raises(DataModelError, match="needle 9 has one seed"):
        needle_directions(np.zeros((1, 3)), [9])
    with pytest.raises(DataModelError, match="same position"):
        needle_directions(np.zeros((2, 3)), [1, 1])


def test_orientation_defaults_to_needle_track_when_absent(tmp_path, ctx):
    plan = _plan()
    path = tmp_path / "plan.dcm"
    write_seed_rtplan(path, plan, context=ctx)
    ds = pydicom.dcmread(path)
    for ch in ds.ApplicationSetupSequence[0].ChannelSequence:
        for cp in ch.BrachyControlPointSequence:
            del cp.ControlPointOrientation
    stripped = tmp_path / "no_orientation.dcm"
    ds.save_as(stripped)
    back = read_rtplan(stripped)
    assert np.allclose(back.directions, plan.directions, atol=1e-9)
    assert np.allclose(back.directions, [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: _replace_seed(p, 3, position_mm=(0.0, math.nan, 1.0)), "seed 3 position"),
        (lambda p: _replace_seed(p, 2, direction=None), "seed 2 has no direction"),
        (lambda p: _replace_seed(p, 2, direction=(0.0, 0.0, 0.0)), "zero vector"),
        (lambda p: _replace_seed(p, 1, source_number=5), "source 5"),
        (lambda p: _replace_seed(p, 1, channel=0), "start at 1"),
        (lambda p: _replace(p, referenced_structure_set_uid=None), "referenced_structure_set"),
        (lambda p: _replace(p, technique="INTERSTITIAL", treatment_type="HDR"), "permanent"),
        (lambda p: _replace(p, seeds=()), "no seeds"),
        (lambda p: _replace(p, prescription_dose_gy=-3.0), "prescription"),
        (
            lambda p: _replace(
                p,
                sources=(*p.sources, _source(number=2, sk_u=0.3)),
                seeds=(
                    p.seeds[0],
                    SeedSource(p.seeds[1].position_mm, (0, 0, 1), 1, source_number=2),
                ),
            ),
            "several sources",
        ),
    ],
)
def test_bad_plans_rejected_nothing_written(tmp_path, ctx, change, match):
    plan = change(_plan())
    with pytest.raises(DataModelError, match=match):
        write_seed_rtplan(tmp_path / "plan.dcm", plan, context=ctx)
    assert list(tmp_path.iterdir()) == []


def _replace(plan, **kw):
    import dataclasses

    return dataclasses.replace(plan, **kw)


def _replace_seed(plan, m, **kw):
    import dataclasses

    seeds = list(plan.seeds)
    seeds[m] = dataclasses.replace(seeds[m], **kw)
    return _replace(plan, seeds=tuple(seeds))


def test_bad_sources_and_positions_rejected():
    with pytest.raises(DataModelError, match="sk_u"):
        _source(sk_u=0.0)
    with pytest.raises(DataModelError, match="half_life"):
        _source(half_life_days=math.nan)
    with pytest.raises(DataModelError, match="source_type"):
        _source(source_type="BALL")
    pos, ids = _needles()
    pos[4, 1] = math.nan
    with pytest.raises(DataModelError, match=r"NaN or inf \(seeds \[4\]\)"):
        seed_implant(pos, ids, source=_source())
    with pytest.raises(DataModelError, match="needle numbers"):
        seed_implant(pos[:3], [1, 1], source=_source())


def test_never_overwrites_unless_asked(tmp_path, ctx):
    path = tmp_path / "plan.dcm"
    write_seed_rtplan(path, _plan(), context=ctx)
    before = _sha(path)
    with pytest.raises(OutputExistsError):
        write_seed_rtplan(path, _plan(label="OTHER"), context=ctx)
    assert _sha(path) == before
    write_seed_rtplan(path, _plan(label="OTHER"), context=ctx, overwrite=True)
    assert read_rtplan(path).label == "OTHER"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.dcm"]


def test_default_half_life_is_tg43u1_i125():
    # AAPM TG-43U1 (Rivard et al. 2004): T½(I-125) = 59.40 d
    assert I125_HALF_LIFE_DAYS == 59.40
    assert _source().mean_life_s / 86400 == pytest.approx(85.70, abs=0.01)


# ------------------------------------------------------------------ reading other systems
def _independent_counts(path):
    ds = pydicom.dcmread(path)
    setup = ds.ApplicationSetupSequence[0]
    return ds, setup, [len(ch.BrachyControlPointSequence) // 2 for ch in setup.ChannelSequence]


def test_pytg43_pdr_plan(shared_data):
    path = shared_data / "dicom" / "brachy_rtplans" / "pyTG43_RP.PDR.dcm"
    before = _sha(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a conformant plan: no warning
        plan = read_rtplan(path)
    _ds, setup, dwells = _independent_counts(path)
    assert (plan.technique, plan.treatment_type) == ("INTRACAVITARY", "PDR")
    assert len(plan.channels) == 3 and plan.n_seeds == sum(dwells) == 21
    (src,) = plan.sources
    assert src.sk_u == 4070.0 and src.half_life_days == 73.83
    assert src.reference_datetime == dt.datetime(2019, 3, 11)
    assert src.source_type == "LINE" and src.active_length_mm == 0.5
    assert src.manufacturer == "Varian Medical Systems"
    assert all(
        c.number_of_pulses == 43 and c.pulse_repetition_interval_s == 3600 for c in plan.channels
    )
    t = plan.dwell_times_s
    # per channel, dwell times per pulse add up to ChannelTotalTime (no transit weights)
    for ch in plan.channels:
        assert t[plan.channel_numbers == ch.number].sum() == pytest.approx(
            ch.total_time_s, rel=1e-9
        )
    # TotalReferenceAirKerma (µGy at 1 m) = S_K x total time over all pulses
    trak = float(setup.TotalReferenceAirKerma)
    assert np.sum(plan.sk_u * t) * 43 / 3600 == pytest.approx(trak, rel=1e-9)
    assert np.sum(plan.sk_u * plan.treatment_times_s) / 3600 == pytest.approx(trak, rel=1e-9)
    # no ControlPointOrientation in this file: directions follow the applicator track
    ch1 = plan.positions_mm[plan.channel_numbers == 1]
    step = (ch1[1] - ch1[0]) / np.linalg.norm(ch1[1] - ch1[0])
    assert np.allclose(plan.directions[0], step, atol=1e-9)
    assert not np.any(np.isnan(plan.directions))
    assert _sha(path) == before


def test_robustbrachy_pl001_hdr_plan_with_resetting_weights(shared_data):
    path = shared_data / "dicom" / "brachy_rtplans" / "RobustBrachy_PL001_HDR.dcm"
    before = _sha(path)
    with pytest.warns(DicomConformanceWarning, match="resets at each dwell"):
        plan = read_rtplan(path)
    _ds, setup, dwells = _independent_counts(path)
    assert (plan.technique, plan.treatment_type) == ("INTERSTITIAL", "HDR")
    assert len(plan.channels) == 14 and plan.n_seeds == sum(dwells)
    assert any("C.8.8.15.6" in w for w in plan.warnings)
    assert plan.prescription_dose_gy == 16.0
    (src,) = plan.sources
    assert src.sk_u == 40700.0
    t = plan.dwell_times_s
    assert np.all(t >= 0)
    for ch in plan.channels:
        assert t[plan.channel_numbers == ch.number].sum() == pytest.approx(
            ch.total_time_s, rel=1e-9
        )
    # the file's TotalReferenceAirKerma (6222.58, 2 decimals) = S_K x sum of dwell times
    assert np.sum(plan.sk_u * t) / 3600 == pytest.approx(
        float(setup.TotalReferenceAirKerma), abs=0.01
    )
    # channel 1's first dwell: weights 0 -> 6.7 of a 46.5 s channel = 6.7 s
    assert t[0] == pytest.approx(6.7, rel=1e-12)
    # orientations come from the file's ControlPointOrientation
    cp0 = setup.ChannelSequence[0].BrachyControlPointSequence[0]
    o = np.array([float(v) for v in cp0.ControlPointOrientation])
    assert np.allclose(plan.directions[0], o / np.linalg.norm(o), atol=1e-7)
    assert _sha(path) == before


def test_photon_plan_is_not_a_brachy_plan():
    path = get_testdata_file("rtplan.dcm")
    with pytest.raises(DicomInputError, match="not a brachytherapy plan") as exc:
        read_rtplan(path)
    assert str(path) in str(exc.value) and "ApplicationSetupSequence" in str(exc.value)


# ------------------------------------------------------------------ reader errors
@pytest.fixture
def plan_file(tmp_path, ctx) -> Path:
    path = tmp_path / "plan.dcm"
    write_seed_rtplan(path, _plan(), context=ctx)
    return path


def test_truncated_and_wrong_files(tmp_path, plan_file):
    data = plan_file.read_bytes()
    for cut in (64, 400, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.dcm"
        bad.write_bytes(data[:cut])
        with pytest.raises(DicomInputError) as exc:
            read_rtplan(bad)
        assert str(bad) in str(exc.value)
    with pytest.raises(DicomInputError, match="Modality"):
        read_rtplan(get_testdata_file("rtdose.dcm"))
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    with pytest.raises(DicomInputError, match=r"notes\.txt"):
        read_rtplan(text)


def _cp(ds, ch=0, m=0):
    return ds.ApplicationSetupSequence[0].ChannelSequence[ch].BrachyControlPointSequence[m]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize(
    ("tag", "edit"),
    [
        ("ApplicationSetupSequence", lambda ds: delattr(ds, "ApplicationSetupSequence")),
        ("SourceSequence", lambda ds: delattr(ds, "SourceSequence")),
        (
            "ReferenceAirKermaRate",
            lambda ds: delattr(ds.SourceSequence[0], "ReferenceAirKermaRate"),
        ),
        (
            "ReferenceAirKermaRate",
            lambda ds: setattr(ds.SourceSequence[0], "ReferenceAirKermaRate", "-1"),
        ),
        (
            "SourceIsotopeHalfLife",
            lambda ds: setattr(ds.SourceSequence[0], "SourceIsotopeHalfLife", "0"),
        ),
        ("SourceNumber", lambda ds: delattr(ds.SourceSequence[0], "SourceNumber")),
        ("ChannelSequence", lambda ds: delattr(ds.ApplicationSetupSequence[0], "ChannelSequence")),
        (
            "ChannelNumber",
            lambda ds: delattr(ds.ApplicationSetupSequence[0].ChannelSequence[1], "ChannelNumber"),
        ),
        (
            "ReferencedSourceNumber",
            lambda ds: setattr(
                ds.ApplicationSetupSequence[0].ChannelSequence[0], "ReferencedSourceNumber", 7
            ),
        ),
        (
            "BrachyControlPointSequence",
            lambda ds: delattr(
                ds.ApplicationSetupSequence[0].ChannelSequence[0], "BrachyControlPointSequence"
            ),
        ),
        ("ControlPoint3DPosition", lambda ds: delattr(_cp(ds, 1, 3), "ControlPoint3DPosition")),
        (
            "ControlPoint3DPosition",
            lambda ds: setattr(_cp(ds, 2, 1), "ControlPoint3DPosition", ["1", "NaN", "2"]),
        ),
        (
            "ControlPoint3DPosition",
            lambda ds: setattr(_cp(ds, 2, 1), "ControlPoint3DPosition", ["1", "2"]),
        ),
        (
            "ControlPointOrientation",
            lambda ds: setattr(_cp(ds, 0, 0), "ControlPointOrientation", [0.0, math.nan, 1.0]),
        ),
        (
            "CumulativeTimeWeight",
            lambda ds: _cp(ds, 0, 1).__setitem__(0x300A02D6, DataElement(0x300A02D6, "LO", "abc")),
        ),
    ],
)
def test_missing_or_bad_tags_are_named(tmp_path, plan_file, tag, edit):
    ds = pydicom.dcmread(plan_file)
    edit(ds)
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    before = _sha(bad)
    with pytest.raises(DicomInputError) as exc:
        read_rtplan(bad)
    assert str(bad) in str(exc.value)
    assert tag in str(exc.value)
    assert _sha(bad) == before


def test_missing_weights_and_counts_warn(tmp_path, plan_file):
    ds = pydicom.dcmread(plan_file)
    ch = ds.ApplicationSetupSequence[0].ChannelSequence[0]
    ch.NumberOfControlPoints = 3
    _cp(ds).CumulativeTimeWeight = "2"
    bad = tmp_path / "odd.dcm"
    ds.save_as(bad)
    with pytest.warns(DicomConformanceWarning):
        plan = read_rtplan(bad)
    assert any("NumberOfControlPoints 3" in w for w in plan.warnings)
    assert any("first CumulativeTimeWeight" in w for w in plan.warnings)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_random_byte_corruption_only_project_errors(tmp_path, plan_file):
    data = bytearray(plan_file.read_bytes())
    rng = np.random.default_rng(11)
    for trial in range(30):
        mutated = bytearray(data)
        for pos in rng.integers(132, len(data), size=4):
            mutated[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"m{trial}.dcm"
        path.write_bytes(bytes(mutated))
        try:
            read_rtplan(path)
        except BrachyCryoError:
            pass


# ------------------------------------------------------------------ peer
_PEER_SCRIPT = r"""
import json, sys
from dicompylercore import dicomparser
dp = dicomparser.DicomParser(sys.argv[1])
plan = dp.GetPlan()
print(json.dumps({"brachy": plan["brachy"], "rxdose": plan["rxdose"], "label": plan["label"],
                  "sop": dp.GetSOPInstanceUID(), "for": dp.GetFrameOfReferenceUID(),
                  "structure_set": dp.GetReferencedStructureSet()}))
"""


@pytest.mark.peer
def test_dicompyler_reads_our_plan(tmp_path, ctx, dicompyler_peer):
    plan = _plan(label="SEEDS 1")
    path = tmp_path / "plan.dcm"
    uid = write_seed_rtplan(path, plan, context=ctx)
    out = dicompyler_peer(_PEER_SCRIPT, path)
    assert out["brachy"] is True
    assert out["rxdose"] == 14500  # dicompyler reports cGy
    assert out["label"] == "SEEDS 1"
    assert out["sop"] == uid
    assert out["for"] == ctx.frame_of_reference_uid
    assert out["structure_set"] == plan.referenced_structure_set_uid


def test_other_files_that_are_not_brachy_plans(shared_data):
    with pytest.raises(DicomInputError, match="not a brachytherapy plan"):
        read_rtplan(shared_data / "dicom" / "dicompyler_core_example" / "rtplan.dcm")
    with pytest.raises(DicomInputError, match="truncated"):
        read_rtplan(get_testdata_file("rtplan_truncated.dcm"))


def test_seed_plan_with_one_control_point_per_seed_and_no_weights(tmp_path, plan_file):
    """Another encoding of seeds: one control point per seed, empty time weights."""
    ds = pydicom.dcmread(plan_file)
    for ch in ds.ApplicationSetupSequence[0].ChannelSequence:
        cps = ch.BrachyControlPointSequence
        for cp in cps:
            del cp.ControlPointOrientation
            cp.CumulativeTimeWeight = None
        ch.BrachyControlPointSequence = pydicom.sequence.Sequence(list(cps)[::2])
        ch.NumberOfControlPoints = len(ch.BrachyControlPointSequence)
        del ch.FinalCumulativeTimeWeight
    ds.ApplicationSetupSequence[0].ChannelSequence[
        3
    ].BrachyControlPointSequence = pydicom.sequence.Sequence(
        [ds.ApplicationSetupSequence[0].ChannelSequence[3].BrachyControlPointSequence[0]]
    )
    ds.ApplicationSetupSequence[0].ChannelSequence[3].NumberOfControlPoints = 1
    other = tmp_path / "other.dcm"
    ds.save_as(other)
    with pytest.warns(DicomConformanceWarning, match="direction unknown"):
        plan = read_rtplan(other)
    original = read_rtplan(plan_file)
    assert plan.n_seeds == 16
    assert np.array_equal(plan.positions_mm, original.positions_mm[:16])
    assert np.allclose(plan.directions[:15], original.directions[:15], atol=1e-9)
    assert np.all(np.isnan(plan.directions[15]))  # a lone seed: no track, no orientation
    assert np.all(np.isnan(plan.dwell_times_s))


def test_plan_and_dose_cross_reference(tmp_path, ctx):
    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.rtdose import read_rtdose, write_rtdose

    plan_path = tmp_path / "RP.dcm"
    uid = write_seed_rtplan(plan_path, _plan(), context=ctx)
    grid = Grid((4, 5, 6), (-40.0, 0.0, -110.0), (2.5, 2.5, 2.5))
    write_rtdose(
        tmp_path / "RD.dcm", np.ones(grid.shape), grid, context=ctx, referenced_plan_uid=uid
    )
    plan, dose = read_rtplan(plan_path), read_rtdose(tmp_path / "RD.dcm")
    assert dose.referenced_plan_uid == plan.sop_instance_uid == uid
    assert dose.frame_of_reference_uid == plan.frame_of_reference_uid == ctx.frame_of_reference_uid
    assert dose.study_instance_uid == ctx.study_instance_uid
    assert dose.series_instance_uid != pydicom.dcmread(plan_path).SeriesInstanceUID


def test_summary_is_json_ready(tmp_path, ctx, shared_data):
    import json

    path = tmp_path / "plan.dcm"
    write_seed_rtplan(path, _plan(), context=ctx)
    ours = json.loads(json.dumps(read_rtplan(path).summary()))
    assert ours["n_sources_positions"] == 20 and ours["n_channels"] == 4
    assert ours["total_sk_u"] == pytest.approx(20 * 0.508)
    assert ours["total_treatment_time_s"] is None  # permanent seeds
    assert ours["sources"][0]["isotope"] == "I-125"
    pdr = read_rtplan(shared_data / "dicom" / "brachy_rtplans" / "pyTG43_RP.PDR.dcm").summary()
    assert pdr["total_treatment_time_s"] == pytest.approx(399.9 * 43, rel=1e-9)


def test_plan_to_seeds_takes_unknown_orientations_along_default_direction():
    """The one conversion of a plan to core Seeds: S_K per source, axes unit, unknown -> +z."""
    from dataclasses import replace

    from brachycryo.core.seeds import DEFAULT_DIRECTION

    plan = _plan(source=_source(sk_u=0.6))
    seeds = plan.to_seeds()
    assert plan.n_unoriented == 0 and len(seeds) == plan.n_seeds
    np.testing.assert_array_equal(seeds.positions_mm, plan.positions_mm)
    np.testing.assert_allclose(seeds.directions, plan.directions, atol=1e-12)
    np.testing.assert_array_equal(seeds.sk_u, np.full(plan.n_seeds, 0.6))
    unknown = (2, 7)
    lost = replace(
        plan,
        seeds=tuple(
            replace(s, direction=None) if m in unknown else s for m, s in enumerate(plan.seeds)
        ),
    )
    assert lost.n_unoriented == 2
    dirs = lost.to_seeds().directions
    np.testing.assert_array_equal(dirs[list(unknown)], [DEFAULT_DIRECTION] * 2)
    np.testing.assert_allclose(
        np.delete(dirs, unknown, axis=0), np.delete(seeds.directions, unknown, axis=0)
    )


def test_oncentra_zero_weight_points_are_not_seeds(tmp_path, plan_file):
    """Oncentra Prostate writes a seed as four control points: two at the seed (cumulative
    weight 0 -> 100) and two 1 mm further on with weights 0, 0.  Only the seeds count."""
    import copy

    ds = pydicom.dcmread(plan_file)
    original = read_rtplan(plan_file)
    for ch in ds.ApplicationSetupSequence[0].ChannelSequence:
        cps = list(ch.BrachyControlPointSequence)
        new = []
        for first in cps[::2]:  # our encoding: a pair of points per seed
            at = [float(v) for v in first.ControlPoint3DPosition]
            beyond = [at[0], at[1], at[2] + 1.0]
            for pos, weight in ((at, 0.0), (at, 100.0), (beyond, 0.0), (beyond, 0.0)):
                cp = copy.deepcopy(first)
                cp.ControlPoint3DPosition = pos
                cp.CumulativeTimeWeight = weight
                new.append(cp)
        for i, cp in enumerate(new):
            cp.ControlPointIndex = i
        ch.BrachyControlPointSequence = pydicom.sequence.Sequence(new)
        ch.NumberOfControlPoints = len(new)
        ch.FinalCumulativeTimeWeight = 100.0
    other = tmp_path / "oncentra.dcm"
    ds.save_as(other)
    with pytest.warns(DicomConformanceWarning, match="no time weight and hold no seed"):
        plan = read_rtplan(other)
    assert plan.n_seeds == original.n_seeds
    np.testing.assert_allclose(plan.positions_mm, original.positions_mm, atol=1e-6)
    assert plan.sk_u.sum() == pytest.approx(original.sk_u.sum())
    assert any("application setup 1, channel 1:" in w for w in plan.warnings)


def test_spacer_source_and_empty_setup_are_skipped_with_a_note(tmp_path, plan_file):
    """Oncentra adds an unreferenced spacer source (isotope '---', strength 0) and an
    UNDEFINED application setup without a Channel Sequence: the plan stays readable."""
    import copy

    ds = pydicom.dcmread(plan_file)
    spacer = copy.deepcopy(ds.SourceSequence[0])
    spacer.SourceNumber = 2
    spacer.SourceIsotopeName = "---"
    spacer.ReferenceAirKermaRate = 0
    ds.SourceSequence.append(spacer)
    empty = pydicom.Dataset()
    empty.ApplicationSetupNumber = 2
    empty.ApplicationSetupType = "UNDEFINED"
    ds.ApplicationSetupSequence.append(empty)
    other = tmp_path / "spacer.dcm"
    ds.save_as(other)
    with pytest.warns(DicomConformanceWarning) as record:
        plan = read_rtplan(other)
    original = read_rtplan(plan_file)
    assert plan.n_seeds == original.n_seeds and len(plan.sources) == 1
    text = " ".join(str(w.message) for w in record)
    assert "source 2 (isotope '---'" in text and "spacer" in text
    assert "application setup 2 (UNDEFINED) has no channels" in text


def test_a_referenced_source_without_strength_is_still_an_error(tmp_path, plan_file):
    ds = pydicom.dcmread(plan_file)
    ds.SourceSequence[0].ReferenceAirKermaRate = 0
    bad = tmp_path / "zero.dcm"
    ds.save_as(bad)
    with pytest.raises(DicomInputError, match="ReferenceAirKermaRate"):
        read_rtplan(bad)
