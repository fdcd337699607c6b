"""Plans that end without seeds, reruns, and interrupted runs leave complete, honest folders."""

import hashlib
import json

import pytest

from brachycryo.cli import main
from brachycryo.planning.pipeline import make_plan
from tests.planning.test_plan_end_to_end import SPEC, _toml

CRYO_ONLY = {
    **{k: v for k, v in SPEC.items() if k not in ("lesion", "needles")},
    "lesion": [{"roi": "GTV_Met1", "allocation": "cryo"}],
    "cryo": {"probe_model": "generic_2p4mm"},
}


def _run(tmp_path, doc, *extra, name="out"):
    spec_path = tmp_path / f"{name}.toml"
    spec_path.write_text(_toml(doc))
    out = tmp_path / name
    return main(["plan", str(spec_path), "--out", str(out), "--quiet", *extra]), out


def _tree_digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_cryo_only_plan_writes_its_outputs(tmp_path, capsys):
    code, out = _run(tmp_path, CRYO_ONLY)
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    assert {"RS.zones.dcm", "metrics.json", "needles.csv", "report.html", "case"} <= names
    assert not names & {"RP.seeds.dcm", "RD.plan.dcm"}  # no seeds: no seed plan, no dose
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_seeds"] == 0 and metrics["feasible"] is True
    block = metrics["lesions"]["GTV_Met1"]
    assert block["cryo"]["n_probes"] >= 1 and block["cryo"]["gtv_ablated_pct"] >= 95.0


def test_every_seed_blocked_exits_3_naming_the_limit(tmp_path, capsys):
    doc = {**SPEC, "oar": [{"roi": "Skin", "dmax_gy": 1.0}]}
    code, out = _run(tmp_path, doc, "--no-report")
    err = capsys.readouterr().err
    assert code == 3
    assert "binding" in err and "Skin" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["feasible"] is False and any("Skin" in b for b in metrics["binding"])


def test_rerun_without_overwrite_changes_nothing(tmp_path, capsys):
    code, out = _run(tmp_path, CRYO_ONLY)
    assert code == 0
    before = _tree_digest(out)
    again, _ = _run(tmp_path, CRYO_ONLY)
    assert again == 1
    assert "exists" in capsys.readouterr().err
    assert _tree_digest(out) == before  # the first run's CT, plans and metrics untouched
    assert _run(tmp_path, CRYO_ONLY, "--overwrite")[0] == 0


def test_api_refuses_to_replace_a_phantom_case(tmp_path):
    from brachycryo.core.errors import OutputExistsError
    from brachycryo.planning.spec import parse_plan_spec

    (tmp_path / "case").mkdir()
    with pytest.raises(OutputExistsError, match="case exists"):
        make_plan(parse_plan_spec(CRYO_ONLY), tmp_path)


def test_ctrl_c_exits_130_and_leaves_no_partial_folder(tmp_path, capsys, monkeypatch):
    import brachycryo.planning.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "plan_cryo_layouts", interrupted)
    code, out = _run(tmp_path, CRYO_ONLY)
    assert code == 130
    assert capsys.readouterr().err.strip().endswith("interrupted")
    assert not out.exists()


def test_gtv_listed_as_an_oar_names_it_and_exits_3(tmp_path, capsys):
    """The seed target of a lesion whose GTV is also an OAR is empty: say which OAR."""
    doc = {**SPEC, "oar": [*SPEC["oar"], {"roi": "GTV_Met2", "dmax_gy": 500.0}]}
    code, _ = _run(tmp_path, doc, "--no-report")
    err = capsys.readouterr().err
    assert code == 3
    assert "within that distance of GTV_Met2" in err


def test_seed_positions_too_close_to_named_oars(tmp_path, capsys):
    import numpy as np

    from brachycryo.core.errors import InfeasiblePlanError
    from brachycryo.core.grid import Grid
    from brachycryo.planning.needles import candidate_seeds

    grid = Grid.from_bounds((-20, -20, -20), (20, 20, 20), 2.0)
    target = np.zeros(grid.shape, bool)
    target[9:11, 9:11, 9:11] = True
    oar = np.zeros(grid.shape, bool)
    oar[8:13, 8:13, 11:13] = True  # 2-4 mm from every target voxel
    far = np.zeros(grid.shape, bool)
    far[0, 0, 0] = True
    with pytest.raises(
        InfeasiblePlanError, match=r"5 mm .* within that distance of Rectum$"
    ) as exc:
        candidate_seeds(grid, target, np.ones(grid.shape, bool),
                        avoid={"Rectum": oar, "Far": far}, clearance_mm=5.0)  # fmt: skip
    assert exc.value.binding == ["seed-OAR clearance", "Rectum"]
