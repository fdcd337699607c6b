"""Ten lesions in one plan (a cryo-ablated metastasis and nine seed metastases, each with
its own prescription), as in the trial that implants seeds into 5-10 metastases."""

import json

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.dicom_io.rtplan import read_rtplan
from tests.planning.test_plan_end_to_end import _toml

RX_GY = {f"GTV_Met{n}": 100.0 + 5 * n for n in range(2, 11)}
SPEC = {
    "case": {
        "phantom": {
            "seed": 0, "site": "abdomen", "spacing_mm": [4.0, 4.0, 4.0], "extra_metastases": 8,
        }
    },
    "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.6},
    "lesion": [{"roi": "GTV_Met1", "allocation": "cryo"}]
    + [
        {"roi": roi, "allocation": "seeds", "margin_mm": 3.0, "prescription_gy": rx}
        for roi, rx in RX_GY.items()
    ],
    "oar": [
        {"roi": "SpinalCord", "dmax_gy": 50.0},
        {"roi": "Aorta", "d2cc_gy": 250.0},
        {"roi": "Bowel", "d2cc_gy": 120.0},
    ],
    "needles": {
        "spacing_mm": 6.0, "seed_spacing_mm": 8.0, "max_needles": 150,
        "no_go": ["Vertebra", "Aorta", "SpinalCord", "Bowel"],
    },
    "cryo": {"probe_model": "generic_2p4mm"},
    "dose": {"spacing_mm": 3.0},
}  # fmt: skip


@pytest.fixture(scope="module")
def ten(tmp_path_factory):
    d = tmp_path_factory.mktemp("ten")
    (d / "plan.toml").write_text(_toml(SPEC))
    code = main(["plan", str(d / "plan.toml"), "--out", str(d / "out"), "--quiet"])
    return code, d / "out", json.loads((d / "out" / "metrics.json").read_text())


def test_ten_lesions_each_with_its_own_block_and_prescription(ten):
    """Every lesion has its own block and goals at its own prescription, and every seed
    metastasis reaches them (V100 >= 95 %, D90 >= its prescription): the template is
    placed where its needles reach every metastasis (``needles._best_template``)."""
    code, out, metrics = ten
    assert list(metrics["lesions"]) == ["GTV_Met1", *RX_GY]
    assert metrics["lesions"]["GTV_Met1"]["cryo"]["gtv_ablated_pct"] >= 95.0
    goals = {(g["roi"], g["metric"]): g for g in metrics["goals"]}
    met = []
    for roi, rx in RX_GY.items():
        block = metrics["lesions"][roi]["seeds"]
        assert block["n_seeds_in_target"] > 0
        d90, v100 = goals[(f"{roi}_SeedTarget", "D90")], goals[(f"{roi}_SeedTarget", "V100")]
        assert d90["goal"] == rx and d90["value"] == block["d90_gy"]
        assert d90["passed"] == (block["d90_gy"] >= rx - 1e-6)
        met.append(d90["passed"] and v100["passed"])
        # V_ref is the lesion's own isodose cloud, not the plan's nine clouds together
        assert block["v_t_ref_cc"] <= block["v_ref_cc"] < 5 * block["v_t_cc"]
    assert all(met), dict(zip(RX_GY, met, strict=True))
    assert code == 0 and metrics["feasible"] and not metrics["binding"]


def test_ten_lesions_share_needles_and_write_one_plan(ten):
    _, out, metrics = ten
    plan = read_rtplan(out / "RP.seeds.dcm")
    assert plan.n_seeds == metrics["n_seeds"] > 0
    rows = (out / "needles.csv").read_text().splitlines()[1:]
    assert len(rows) == metrics["n_needles"]
    assert int(np.sum([int(r.split(",")[8]) for r in rows])) == plan.n_seeds
    html = (out / "report.html").read_text()
    assert all(roi in html for roi in RX_GY)
