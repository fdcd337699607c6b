"""The README's two quick-start commands and CI agree with the project."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)\n```", text, re.S)
    assert m, f"README has no {marker} block"
    return m.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    cmd = _block("test-command")
    extracted = subprocess.run(
        ["awk", r"/<!-- test-command -->/{f=1; next} f && /^```/{if (b) exit; b=1; next} f && b",
         str(ROOT / "README.md")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert extracted == cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "dicom3tools" in ci
    assert "pytest" in cmd and "ruff check" in cmd and "ruff format --check" in cmd


def test_main_command_runs_the_demo():
    cmd = _block("main-command")
    assert "pip install" in cmd and "brachycryo demo" in cmd


def test_no_machine_paths_in_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    machine_dirs = [f"{ROOT.parent}/", f"{Path.home()}/"]
    offenders = []
    for name in tracked:
        p = ROOT / name
        if p.suffix in {".py", ".md", ".toml", ".cfg", ".txt", ".json", ""} and p.is_file():
            text = p.read_text(errors="ignore")
            offenders += [f"{name}: {d}" for d in machine_dirs if d in text]
    assert offenders == []


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_for_setuptools():
    """``packages`` is listed by hand (the package-dir mapping): no folder may be forgotten."""
    setup = _pyproject()["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for pkg, folder in setup["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            name = ".".join([pkg, *rel])
            # a folder mapped on its own is reached through its own entry
            if not any(name == p or name.startswith(p + ".") for p in setup["package-dir"]
                       if p != pkg and p.startswith(pkg + ".")):  # fmt: skip
                found.add(name)
    assert found == listed


def test_wheel_installs_one_import_name_with_its_data(tmp_path):
    """``pip install .`` adds exactly one top-level import name, ``brachycryo``, and ships the
    reference data (seed-model tables, tissue and probe tables, example specs)."""
    import shutil
    import sys
    import zipfile

    # build from the tracked files only: a stale build/ folder would leak into the wheel
    src = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("brachycryo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"brachycryo"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["brachycryo"]
    setup = _pyproject()["tool"]["setuptools"]
    for pkg, folder in setup["package-dir"].items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".csv", ".toml"}:
                inside = pkg.replace(".", "/") + "/" + path.relative_to(ROOT / folder).as_posix()
                assert inside in names, f"{inside} is not in the wheel"
    assert sum(n.startswith("brachycryo/dose_kernels/data/seed_models/") for n in names) >= 48
