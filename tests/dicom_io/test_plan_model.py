"""Seed model of a plan without SourceModelID (issue 14.3): suggestion and ``auto``."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError
from brachycryo.dicom_io.plan_model import choose_seed_model, suggest_for_plan
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant
from brachycryo.dose_kernels.seed_model import suggest_seed_models


def _plan(**source):
    base = dict(sk_u=0.5, reference_datetime=dt.datetime(2026, 1, 1), model="")
    base.update(source)
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]])
    return seed_implant(pos, [1, 1], source=BrachySource(**base))


@pytest.mark.parametrize(
    "manufacturer,isotope,length_mm,best",
    [
        ("Nucletron B.V.", "I-125", 3.4, "130.002"),  # Oncentra Prostate's selectSeed
        ("NUCLETRON", "125I", None, "130.002"),
        ("Theragenics Corporation", "I-125", 3.5, "AgX100"),
        ("Eckert & Ziegler BEBIG", "I-125", 3.5, "I25.S06"),
        ("Oncura", "I-125", 2.8, "9011"),  # the 2.8 mm ThinSeed among four Amersham models
    ],
)
def test_unique_suggestions(manufacturer, isotope, length_mm, best):
    hint = suggest_seed_models(manufacturer, isotope, length_mm)
    assert hint.unique and hint.best == best
    assert manufacturer in hint.reason


@pytest.mark.parametrize(
    "manufacturer,isotope,length_mm",
    [
        ("Amersham", "I-125", 3.0),  # 6702, 6711 and 6733 all have L = 3.0 mm
        ("", "I-125", 3.0),  # no manufacturer: the length alone never decides
        ("Unknown Maker", "I-125", 4.0),
        ("Nucletron", "Ir-192", 3.5),  # no Ir-192 model ships
    ],
)
def test_ambiguous_or_impossible_suggestions(manufacturer, isotope, length_mm):
    hint = suggest_seed_models(manufacturer, isotope, length_mm)
    assert not hint.unique and hint.best is None


def test_choose_seed_model_order_and_messages():
    nucletron = _plan(manufacturer="Nucletron", active_length_mm=3.4)
    assert choose_seed_model(nucletron, "6711").name == "6711"
    assert choose_seed_model(_plan(model="6711"), None).origin == "the plan's SourceModelID"
    with pytest.raises(ConfigError, match=r"probably 130\.002.*--model auto"):
        choose_seed_model(nucletron, None)
    chosen = choose_seed_model(nucletron, "auto")
    assert chosen.name == "130.002" and "ActiveSourceLength 3.4 mm" in chosen.origin
    assert suggest_for_plan(nucletron).best == "130.002"
    amersham = _plan(manufacturer="Amersham", active_length_mm=3.0)
    with pytest.raises(ConfigError, match=r"cannot choose.*6702, 6711, 6733"):
        choose_seed_model(amersham, "AUTO")
