"""End to end on a small phantom: outputs, trade-offs, determinism, RTPLAN round trip."""

import json
import re

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.rtplan import read_rtplan
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dose_kernels import dose_on_grid
from brachycryo.planning.evaluate import evaluate_zoned_plan
from brachycryo.planning.outputs import metrics_document
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.qa.dvh import dvh_from_mask
from brachycryo.qa.metrics import metric_value, structure_metrics
from brachycryo.reports.plan import write_plan_folder

SPEC = {
    "case": {"phantom": {"seed": 2, "site": "abdomen", "spacing_mm": [4.0, 4.0, 4.0]}},
    "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.8},
    "lesion": [
        {
            "roi": "GTV_Met2",
            "allocation": "seeds",
            "margin_mm": 5.0,
            "needle_direction": [0.0, 1.0, 0.0],
        },
        {
            "roi": "GTV_Met1",
            "allocation": "zoned",
            "core": "margin",
            "core_margin_mm": 4.0,
            "margin_mm": 5.0,
            "needle_direction": [1.0, 0.0, 0.0],
        },
    ],
    "oar": [{"roi": "Bowel", "d2cc_gy": 200.0}, {"roi": "Kidney_R", "d2cc_gy": 150.0}],
    "needles": {"spacing_mm": 8.0, "seed_spacing_mm": 10.0, "no_go": ["Bowel", "Aorta"]},
    "dose": {"spacing_mm": 3.0, "backend": "numba"},
}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    spec = parse_plan_spec(SPEC)
    result = make_plan(spec, out)
    plan_metrics = evaluate_zoned_plan(result)
    paths = write_plan_folder(result, plan_metrics, out, report_html=True)
    return result, metrics_document(plan_metrics), paths


def test_outputs_and_metrics(planned, dciodvfy):
    result, metrics, paths = planned
    assert result.n_seeds > 0 and metrics["feasible"], metrics["binding"]
    for lesion in ("GTV_Met2", "GTV_Met1"):
        block = metrics["lesions"][lesion]["seeds"]
        assert block["v100_pct"] >= 95.0 and block["d90_gy"] >= 110.0
    assert metrics["lesions"]["GTV_Met1"]["core_volume_cc"] > 0
    for c in metrics["constraints"]:
        assert set(c) == {"roi", "metric", "limit", "value", "passed"} and c["passed"]
    keys = {"volume_cc", "dmin_gy", "dmean_gy", "dmax_gy", "d90_gy", "d98_gy", "d100_gy",
            "d2cc_gy", "d0.1cc_gy", "v100_pct", "v150_pct", "v200_pct"}  # fmt: skip
    assert keys <= set(metrics["structures"]["GTV_Met2_SeedTarget"])
    saved = json.loads(paths["metrics"].read_text())
    assert saved["n_seeds"] == result.n_seeds
    rows = paths["needles"].read_text().strip().splitlines()
    assert len(rows) - 1 == result.n_needles
    html = paths["report"].read_text()
    assert "GTV_Met2_SeedTarget" in html and "data:image/png;base64" in html
    assert sum(int(r.split(",")[8]) for r in rows[1:]) == result.n_seeds
    zones = read_rtstruct(paths["rtstruct"])
    assert "GTV_Met2_SeedTarget" in zones.roi_names and "GTV_Met1_Core" in zones.roi_names
    for p in (paths["rtplan"], paths["rtstruct"]):
        errors, _ = dciodvfy(p)
        assert errors == [], p


def test_metrics_json_keys_and_typed_seeds(planned):
    """metrics.json keeps its key order; the plan's seeds are one Seeds with their needles."""
    result, _metrics, paths = planned
    saved = json.loads(paths["metrics"].read_text())
    assert list(saved) == [
        "prescription_gy", "seed_model", "sk_u", "n_seeds", "n_needles", "total_sk_u",
        "structures", "lesions", "constraints", "goals", "feasible", "binding", "backend",
        "timings_s", "optimizer",
    ]  # fmt: skip
    assert list(saved["timings_s"]) == [
        "case_s", "masks_s", "cryo_s", "candidates_s", "influence_matrix_s", "dose_s",
        "optimizer_s", "total_s",
    ]  # fmt: skip
    assert list(saved["lesions"]["GTV_Met2"]["seeds"])[:6] == [
        "n_seeds_in_target", "v100_pct", "v150_pct", "v200_pct", "d90_gy", "target",
    ]  # fmt: skip
    assert isinstance(result.seeds, Seeds) and len(result.seeds) == result.n_seeds
    assert result.seed_needles.shape == (result.n_seeds,)
    np.testing.assert_allclose(result.seeds.sk_u, result.spec.sk_u)


def test_each_lesion_has_its_own_reference_isodose_volume(planned):
    """Two seed lesions: their CI / EI use the prescription isodose volume around each, and
    the two volumes add up to the whole prescription isodose volume in the body."""
    from brachycryo.qa.metrics import conformity_index, isodose_volume_cc

    result, metrics, _ = planned
    blocks = {k: v["seeds"] for k, v in metrics["lesions"].items() if v.get("seeds")}
    assert set(blocks) == {"GTV_Met1", "GTV_Met2"}
    whole = isodose_volume_cc(result.dose_gy, result.grid, 110.0, within=result.masks["BODY"])
    assert sum(b["v_ref_cc"] for b in blocks.values()) == pytest.approx(whole, abs=2e-3)
    for name, b in blocks.items():
        assert 0 < b["v_ref_cc"] < whole
        assert b["v_t_ref_cc"] <= b["v_ref_cc"] + 1e-3  # the lesion's own coverage is in it
        dvh = evaluate_zoned_plan(result).dvhs[f"{name}_SeedTarget"]
        assert b["ci"] == pytest.approx(conformity_index(dvh, b["v_ref_cc"], 110.0), abs=1e-3)


def test_rtplan_reimported_gives_the_same_dvh(planned):
    result, metrics, paths = planned
    plan = read_rtplan(paths["rtplan"])
    assert plan.n_seeds == result.n_seeds
    dose = dose_on_grid(
        Seeds(plan.positions_mm, plan.sk_u, plan.directions), result.grid, "6711",
        backend="numba", dtype=np.float64,
    )  # fmt: skip
    mask = result.zones["GTV_Met2"].seed_target
    m = structure_metrics(dvh_from_mask(mask, result.grid, dose, result.grid), prescription_gy=110)
    ref = metrics["structures"]["GTV_Met2_SeedTarget"]
    assert m["d90_gy"] == pytest.approx(ref["d90_gy"], rel=1e-3)
    assert m["v100_pct"] == pytest.approx(ref["v100_pct"], abs=0.05)


def test_same_input_same_plan(planned, tmp_path):
    result, _, _ = planned
    again = make_plan(parse_plan_spec(SPEC), tmp_path)
    np.testing.assert_allclose(again.seeds.positions_mm, result.seeds.positions_mm)


def test_oar_inside_the_margin_forces_a_reported_trade_off(tmp_path, capsys):
    """Skin lies inside Met2's 10 mm margin; a 40 Gy skin limit cannot coexist with 110 Gy."""
    doc = {**SPEC, "lesion": [{**SPEC["lesion"][0], "margin_mm": 10.0}],
           "oar": [{"roi": "Skin", "dmax_gy": 40.0}]}  # fmt: skip
    spec_path = tmp_path / "plan.toml"
    spec_path.write_text(_toml(doc))
    code = main(["plan", str(spec_path), "--out", str(tmp_path / "out"), "--quiet", "--no-report"])
    assert code == 3
    err = capsys.readouterr().err
    assert "binding" in err and "Skin" in err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["feasible"] is False and any("Skin" in b for b in metrics["binding"])
    skin = next(c for c in metrics["constraints"] if c["roi"] == "Skin")
    assert skin["passed"] and skin["value"] <= 40.0  # the limit holds: coverage gave way
    goals = {g["metric"]: g for g in metrics["goals"]}
    assert not (goals["V100"]["passed"] and goals["D90"]["passed"])


def _toml(doc) -> str:
    """Minimal TOML writer for the nested dict/list structure used here."""
    lines = []

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(float(v)) if isinstance(v, float) else str(v)

    def table(prefix, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict | list)
                   or (isinstance(v, list) and not (v and isinstance(v[0], dict)))}  # fmt: skip
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {value(v)}")
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{name}]]")
                    for kk, vv in item.items():
                        lines.append(f"{kk} = {value(vv)}")

    table("", doc)
    return "\n".join(lines) + "\n"


def test_high_risk_sub_zone_gets_its_own_prescription(tmp_path):
    """Met2's GTV as a high-risk sub-zone at 180 Gy inside its 110 Gy margin zone: the
    optimiser treats it as a zone with its own prescription, metrics.json reports it
    against 180 Gy, and the GTV gets more dose than in the same plan without it."""
    base = {**SPEC, "lesion": [SPEC["lesion"][0]], "oar": [{"roi": "Bowel", "d2cc_gy": 200.0}]}
    boosted = {
        **base,
        "lesion": [
            {**SPEC["lesion"][0], "high_risk": [{"roi": "GTV_Met2", "prescription_gy": 180.0}]}
        ],
    }
    plain = metrics_document(evaluate_zoned_plan(make_plan(parse_plan_spec(base), tmp_path / "a")))
    result = make_plan(parse_plan_spec(boosted), tmp_path / "b")
    pm = evaluate_zoned_plan(result)
    doc = metrics_document(pm)
    zone = "GTV_Met2_GTV_Met2"
    assert zone in doc["structures"]
    goals = [g for g in doc["goals"] if g["roi"] == zone]
    assert {g["metric"] for g in goals} == {"V100", "D90"}
    d90 = next(g for g in goals if g["metric"] == "D90")
    assert d90["goal"] == 180.0
    # its V100 is relative to its own 180 Gy
    v_boost_pct = metric_value(pm.dvhs[zone], "V180Gy")
    assert doc["structures"][zone]["v100_pct"] == pytest.approx(v_boost_pct, abs=1e-3)
    assert result.selection.coverage["GTV_Met2 GTV_Met2"]["d90_gy"] > 0
    if doc["feasible"]:
        assert d90["passed"] and d90["value"] >= 180.0 - 1e-6
    else:
        assert doc["binding"]
    # the boost raises the GTV's dose over the plan without it
    assert doc["structures"]["GTV_Met2"]["d90_gy"] > plain["structures"]["GTV_Met2"]["d90_gy"] + 5.0


def test_hot_spot_goals_reported_for_every_seed_target(planned):
    """V150 <= 60 % and V200 <= 20 % of each seed target (defaults), reported pass/fail."""
    _, metrics, _ = planned
    hot = [g for g in metrics["goals"] if g.get("at_most")]
    targets = {f"{k}_SeedTarget" for k, v in metrics["lesions"].items() if v.get("seeds")}
    assert {(g["roi"], g["metric"]) for g in hot} == {
        (t, m) for t in targets for m in ("V150", "V200")
    }
    for g in hot:
        assert g["goal"] == {"V150": 60.0, "V200": 20.0}[g["metric"]]
        value = metrics["structures"][g["roi"]][f"{g['metric'].lower()}_pct"]
        assert g["value"] == value and g["passed"] == (value <= g["goal"] + 1e-6)


def test_hot_spot_goals_from_the_spec_and_per_lesion():
    from brachycryo.core.errors import ConfigError

    doc = {**SPEC, "goals": {"v150_max_pct": 50.0},
           "lesion": [{**SPEC["lesion"][0], "v200_max_pct": 15.0}, SPEC["lesion"][1]]}  # fmt: skip
    spec = parse_plan_spec(doc)
    met2, met1 = spec.lesions
    assert (spec.hot_spot_goals(met2).v150_max_pct, spec.hot_spot_goals(met2).v200_max_pct) == (
        50.0,
        15.0,
    )
    assert spec.hot_spot_goals(met1).v200_max_pct == 20.0
    with pytest.raises(ConfigError, match="goals.v150_max_pct"):
        parse_plan_spec({**SPEC, "goals": {"v150_max_pct": 150.0}})
    with pytest.raises(ConfigError, match="goals"):
        parse_plan_spec({**SPEC, "goals": {"v300_max_pct": 5.0}})


def test_written_series_are_distinct_and_the_plan_references_the_zones(planned, dciodvfy):
    """Issue 14.7: one SeriesNumber per written series of the study; the RTPLAN references
    the structure set it was planned on (the zones, holding the seed targets); dciodvfy has
    no Laterality (CT) or ApplicationSetupType (RTPLAN) warning."""
    import pydicom

    result, _, paths = planned
    files = {
        "ct": result.case.ct.paths[0],
        "case_rs": result.case.structures.path,
        "zones": paths["rtstruct"],
        "rtplan": paths["rtplan"],
        "rtdose": paths["rtdose"],
    }
    ds = {k: pydicom.dcmread(p, stop_before_pixels=True) for k, p in files.items()}
    assert len({d.StudyInstanceUID for d in ds.values()}) == 1
    numbers = [int(d.SeriesNumber) for d in ds.values()]
    assert len(set(numbers)) == len(numbers), numbers
    referenced = ds["rtplan"].ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID
    assert referenced == ds["zones"].SOPInstanceUID != ds["case_rs"].SOPInstanceUID
    assert read_rtplan(paths["rtplan"]).referenced_structure_set_uid == referenced
    for kind, word in (("ct", "Laterality"), ("rtplan", "ApplicationSetupType")):
        errors, warnings_ = dciodvfy(files[kind])
        assert errors == [] and not [w for w in warnings_ if word in w], warnings_


def test_report_viewer_outlines_seed_targets_as_planned_zones(planned):
    """The seed targets are the planner's zones, not isotherms: the viewer lists them as
    'zone' layers (solid, "(planned zone)"), the ice balls as isotherms."""
    result, _, paths = planned
    page = paths["report"].read_text()
    m = re.search(r'<script type="application/json" id="bc-data">(.*?)</script>', page, re.S)
    assert m is not None
    kinds = {ly["name"]: ly["kind"] for ly in json.loads(m.group(1))["layers"]}
    seeded = [le for le, z in result.zones.items() if z.seed_target is not None]
    assert seeded
    for lesion in seeded:
        assert kinds[f"{lesion} seed target"] == "zone"
    for lesion in result.cryo:
        assert kinds[f"{lesion} 0 C"] == "isotherm"
    assert set(kinds.values()) <= {"structure", "isotherm", "zone"}
