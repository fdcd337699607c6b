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
