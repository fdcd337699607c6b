"""Run mypy on the whole ``brachycryo`` package, subpackages in the owner's folders included.

mypy finds modules by their place on disk, and ``brachycryo.planning`` lives in ``planning/``
(setuptools' ``package-dir`` mapping, which mypy cannot follow through an editable install's
import hook).  So this builds the namespace as it installs, ``build/typecheck/brachycryo/``,
out of symbolic links to the real folders (from ``[tool.setuptools.package-dir]``), runs mypy
there with the settings of ``[tool.mypy]`` in ``pyproject.toml``, and prints every path as
the repository's own.  Exit status is mypy's.

    python tools/typecheck.py            # the whole package
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / "build" / "typecheck"


def package_dirs() -> dict[str, Path]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {k: ROOT / v for k, v in doc["tool"]["setuptools"]["package-dir"].items()}


def build_tree() -> dict[str, str]:
    """The link tree; returns {path prefix in the tree: path prefix in the repository}."""
    dirs = package_dirs()
    top = TREE / "brachycryo"
    if TREE.exists():
        shutil.rmtree(TREE)
    top.mkdir(parents=True)
    for entry in dirs.pop("brachycryo").iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    prefixes = {"brachycryo/": "brachycryo/"}
    for pkg, folder in dirs.items():
        sub = pkg.split(".", 1)[1]
        (top / sub).symlink_to(folder, target_is_directory=True)
        prefixes[f"brachycryo/{sub}/"] = f"{folder.relative_to(ROOT)}/"
    return prefixes


def main(argv: list[str]) -> int:
    prefixes = build_tree()
    cwd = os.getcwd()
    os.chdir(TREE)
    try:
        out, err, status = api.run(
            ["--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "brachycryo", *argv]
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    longest_first = sorted(prefixes, key=len, reverse=True)
    for line in out.splitlines():
        for p in longest_first:
            if line.startswith(p):
                line = prefixes[p] + line[len(p) :]
                break
        print(line)
    print(err, end="", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
