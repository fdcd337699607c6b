"""Property tests: mutated RT Plan / RT Dose files never let a foreign exception escape.

Hypothesis deletes, empties or corrupts a random element (at any depth of the sequences)
of a valid file we wrote, or flips random bytes of it; reading the result must either
succeed or raise a :class:`~brachycryo.core.errors.BrachyCryoError`, and must leave the file
as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext, new_uid
from brachycryo.dicom_io.rtdose import read_rtdose, write_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, read_rtplan, seed_implant, write_seed_rtplan

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: more examples for a long local run: BRACHYCRYO_MUTATION_EXAMPLES=5000 pytest ...
_SETTINGS = settings(
    max_examples=int(os.environ.get("BRACHYCRYO_MUTATION_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("valid")
    ctx = StudyContext()
    src = BrachySource(sk_u=0.5, reference_datetime=dt.datetime(2026, 1, 2, 3, 4, 5))
    pos = np.array([[0, 0, 0], [0, 0, 5], [0, 0, 10], [8, 1, 0], [8, 1.5, 5]], dtype=float)
    plan = seed_implant(
        pos, [1, 1, 1, 2, 2], source=src, prescription_dose_gy=145.0,
        referenced_structure_set_uid=new_uid(),
    )  # fmt: skip
    uid = write_seed_rtplan(folder / "plan.dcm", plan, context=ctx)
    grid = Grid((3, 4, 5), (-5.0, 2.0, 7.0), (2.0, 2.0, 2.5))
    dose = np.random.default_rng(0).random(grid.shape) * 50
    write_rtdose(folder / "dose.dcm", dose, grid, context=ctx, referenced_plan_uid=uid)
    files = {
        "plan": (folder / "plan.dcm").read_bytes(),
        "dose": (folder / "dose.dcm").read_bytes(),
    }
    # other systems' plans (when the shared reference data are present)
    real = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dicom"
    for kind, name in (("pdr", "pyTG43_RP.PDR.dcm"), ("hdr", "RobustBrachy_PL001_HDR.dcm")):
        path = real / "brachy_rtplans" / name
        if path.is_file():
            files[kind] = _trimmed(path)
    return files


def _trimmed(path: Path) -> bytes:
    """A real plan cut to 3 channels without per-control-point dose references (speed)."""
    ds = pydicom.dcmread(path)
    for setup in ds.ApplicationSetupSequence:
        setup.ChannelSequence = pydicom.sequence.Sequence(list(setup.ChannelSequence)[:3])
        for ch in setup.ChannelSequence:
            for cp in ch.BrachyControlPointSequence:
                if "BrachyReferencedDoseReferenceSequence" in cp:
                    del cp.BrachyReferencedDoseReferenceSequence
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


_KINDS = [
    ("plan", read_rtplan),
    ("dose", read_rtdose),
    ("pdr", read_rtplan),
    ("hdr", read_rtplan),
]


def _addresses(ds: Dataset, prefix=()) -> list[tuple]:
    """Every element of ``ds`` (recursively) as a path of (tag, item index) steps."""
    out = []
    for elem in ds:
        here = (*prefix, elem.tag)
        out.append(here)
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value):
                out.extend(_addresses(item, (*here, n)))
    return out


def _locate(ds: Dataset, address: tuple) -> tuple[Dataset, int]:
    parent = ds
    steps = list(address)
    while len(steps) > 1:
        tag, index = steps.pop(0), steps.pop(0)
        parent = parent[tag].value[index]
    return parent, steps[0]


_GARBAGE = st.one_of(
    st.sampled_from(["", "NaN", "inf", "-inf", "-1", "0", "1e308", "abc", "1\\2", "\\\\\\"]),
    st.text(max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

_ACTIONS = st.sampled_from(["delete", "empty", "garbage_text", "garbage_bytes", "drop_item"])


def _mutate(data: bytes, address_index: int, action: str, text: str, blob: bytes) -> bytes | None:
    """The file with one element mutated, or None where pydicom cannot encode the mutation.

    pydicom's ``replace_un_with_known_vr`` is switched off while the mutated file is built,
    so that raw garbage bytes are written as they are (the reader decodes them later).
    """
    saved = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        return _apply(data, address_index, action, text, blob)
    except Exception:  # pydicom refuses to build or encode this mutation: nothing to test
        return None
    finally:
        pydicom.config.replace_un_with_known_vr = saved


def _apply(data: bytes, address_index: int, action: str, text: str, blob: bytes) -> bytes | None:
    ds = pydicom.dcmread(io.BytesIO(data))
    addresses = _addresses(ds)
    address = addresses[address_index % len(addresses)]
    parent, tag = _locate(ds, address)
    elem = parent[tag]
    if action == "delete":
        del parent[tag]
    elif action == "empty":
        parent[tag] = DataElement(tag, elem.VR, [] if elem.VR == "SQ" else None)
    elif action == "garbage_text":
        parent[tag] = DataElement(tag, "LO", text)
    elif action == "garbage_bytes":
        parent[tag] = DataElement(tag, "UN", blob)
    elif action == "drop_item":
        if elem.VR != "SQ" or not elem.value:
            return None
        del elem.value[0]
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _read_checked(reader, path: Path) -> None:
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reader(path)
        except BrachyCryoError:
            pass
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(("kind", "reader"), _KINDS)
@_SETTINGS
@given(
    address_index=st.integers(min_value=0, max_value=10_000),
    action=_ACTIONS,
    text=_GARBAGE,
    blob=st.binary(max_size=24),
)
def test_mutated_elements(tmp_path, valid_files, kind, reader, address_index, action, text, blob):
    if kind not in valid_files:
        pytest.skip(f"reference file for {kind!r} not present (../shared/data)")
    mutated = _mutate(valid_files[kind], address_index, action, text, blob)
    assume(mutated is not None)
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(mutated)
    _read_checked(reader, path)


@pytest.mark.parametrize(("kind", "reader"), _KINDS)
@_SETTINGS
@given(data=st.data())
def test_mutated_bytes(tmp_path, valid_files, kind, reader, data):
    if kind not in valid_files:
        pytest.skip(f"reference file for {kind!r} not present (../shared/data)")
    raw = bytearray(valid_files[kind])
    n = data.draw(st.integers(min_value=1, max_value=6))
    for _ in range(n):
        pos = data.draw(st.integers(min_value=128, max_value=len(raw) - 1))
        raw[pos] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=len(raw))))
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(bytes(raw if cut is None else raw[:cut]))
    _read_checked(reader, path)


def test_valid_files_read_cleanly(tmp_path, valid_files):
    """The unmutated starting points are read without error (so mutations matter)."""
    for kind, reader in (("plan", read_rtplan), ("dose", read_rtdose)):
        path = tmp_path / f"{kind}.dcm"
        path.write_bytes(valid_files[kind])
        result = reader(path)
        assert result.warnings == ()
    assert math.isfinite(read_rtdose(tmp_path / "dose.dcm").dose_gy.max())
