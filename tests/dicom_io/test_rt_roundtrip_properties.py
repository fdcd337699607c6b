"""Property tests: any grid orientation / spacing / dose, any seed layout round-trips."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext, new_uid
from brachycryo.dicom_io.rtdose import read_rtdose, write_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, read_rtplan, seed_implant, write_seed_rtplan

_SETTINGS = settings(
    max_examples=int(os.environ.get("BRACHYCRYO_PROPERTY_EXAMPLES", "40")), deadline=None
)


def _rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (non-zero) quaternion."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


_QUATERNION = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1
)


@_SETTINGS
@given(
    q=_QUATERNION,
    flip_k=st.booleans(),
    shape=st.tuples(*(st.integers(1, 6),) * 3),
    spacing=st.tuples(*(st.floats(0.3, 7.0),) * 3),
    origin=st.tuples(*(st.floats(-500, 500),) * 3),
    max_gy=st.floats(1e-3, 1e4),
    bits=st.sampled_from([16, 32]),
    seed=st.integers(0, 2**16),
)
def test_dose_round_trip(q, flip_k, shape, spacing, origin, max_gy, bits, seed):
    d = _rotation(np.asarray(q))
    if flip_k:
        d[:, 2] *= -1
    grid = Grid(shape, origin, spacing, tuple(d.reshape(-1)))
    dose = np.random.default_rng(seed).random(shape) * max_gy
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.dcm"
        write_rtdose(
            path, dose, grid, context=StudyContext(), referenced_plan_uid=new_uid(),
            bits_allocated=bits,
        )  # fmt: skip
        back = read_rtdose(path)
    step = back.dose_grid_scaling
    assert step <= max(dose.max(), 0) / (2**bits - 1) * (1 + 1e-9) or dose.max() == 0
    centres = grid.voxel_centres_mm().reshape(-1, 3)
    ijk = back.grid.mm_to_ijk(centres)
    idx = np.rint(ijk).astype(int)
    assert np.allclose(ijk, idx, atol=1e-6)  # the same voxel centres
    got = back.dose_gy[idx[:, 2], idx[:, 1], idx[:, 0]]
    assert np.max(np.abs(got - dose.reshape(-1))) <= step / 2 * (1 + 1e-9)


@_SETTINGS
@given(
    n_needles=st.integers(1, 6),
    per_needle=st.integers(2, 6),
    q=_QUATERNION,
    spacing_mm=st.floats(3.0, 12.0),
    offset=st.tuples(*(st.floats(-300, 300),) * 3),
    sk_u=st.floats(0.05, 5.0),
    rx=st.one_of(st.none(), st.floats(1.0, 300.0)),
)
def test_plan_round_trip(n_needles, per_needle, q, spacing_mm, offset, sk_u, rx):
    r = _rotation(np.asarray(q))
    axis = r[:, 2]
    pos, ids = [], []
    for n in range(n_needles):
        entry = np.asarray(offset) + 10.0 * n * r[:, 0] + 3.3 * (n % 2) * r[:, 1]
        for m in range(per_needle):
            pos.append(entry + m * spacing_mm * axis)
            ids.append(n + 1)
    src = BrachySource(sk_u=sk_u, reference_datetime=dt.datetime(2026, 5, 6, 7, 8, 9))
    plan = seed_implant(
        np.array(pos), ids, source=src, prescription_dose_gy=rx,
        referenced_structure_set_uid=new_uid(),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.dcm"
        write_seed_rtplan(path, plan, context=StudyContext())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = read_rtplan(path)
    assert np.allclose(back.directions, axis, atol=1e-6)  # every seed along its needle
    assert np.max(np.abs(back.positions_mm - plan.positions_mm)) < 1e-8
    assert np.array_equal(back.channel_numbers, plan.channel_numbers)
    # DS values keep 16 characters: S_K and the prescription come back to ~1e-14 relative
    (got,) = back.sources
    assert abs(got.sk_u - sk_u) <= 1e-12 * sk_u
    assert got.reference_datetime == src.reference_datetime
    if rx is None:
        assert back.prescription_dose_gy is None
    else:
        assert abs(back.prescription_dose_gy - rx) <= 1e-12 * rx
