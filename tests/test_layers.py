"""The floor plan: every import between brachycryo's subpackages points down, and no two modules
import each other, directly or round a circle.

Read from the source with :mod:`ast` (every ``import`` statement, function-level ones
included), mapped to module names through ``[tool.setuptools.package-dir]`` in
``pyproject.toml``.  Written here rather than with import-linter because import-linter's graph
builder (grimp) walks one package directory, and ``brachycryo``'s subpackages live in the
owner's top-level folders, mapped into the namespace by setuptools.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = "brachycryo"

#: From the roof down.  Subpackages on one floor are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("reports",),
    ("planning", "postimplant", "cohort", "followup", "outcomes"),
    # scenario evaluation of a plan (reads plan folders, dose, DVH metrics): an evaluation
    # the planning workflow consumes too (``[optimizer] robust``), so below the workflows
    ("robustness",),
    ("qa", "phantoms"),
    ("dicom_io",),
    ("dose_kernels", "cryo_iceball"),
    ("core",),
)
FLOOR = {name: len(LAYERS) - i for i, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (or package)
    line: int


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """``{"brachycryo": root/"brachycryo", "brachycryo.planning": root/"planning", ...}``."""
    doc = tomllib.loads((root / "pyproject.toml").read_text())
    mapping = doc["tool"]["setuptools"]["package-dir"]
    return {pkg: root / folder for pkg, folder in mapping.items()}


def module_files(dirs: Mapping[str, Path]) -> dict[str, Path]:
    """Every module of the namespace and its file."""
    modules: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([pkg, *parts])] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, source: str, *, is_package: bool, known: Iterable[str]) -> list[Import]:
    """The imports of one module that name a module of ours (``known``)."""
    known = set(known)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            # ``from pkg import mod`` imports the module pkg.mod where it exists
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        for t in targets:
            if t == TOP or t.startswith(TOP + "."):
                found.append(Import(module, t, node.lineno))
    return found


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_violations(imports: Iterable[Import]) -> list[str]:
    """Every import that runs up or sideways between subpackages, or out of the bare top."""
    bad = []
    for imp in imports:
        src, dst = subpackage(imp.source), subpackage(imp.target)
        if src is None:
            bad.append(f"{imp.source}:{imp.line} the top package imports {imp.target}")
            continue
        if dst is None or src == dst:
            continue
        if src not in FLOOR or dst not in FLOOR:
            unknown = src if src not in FLOOR else dst
            bad.append(f"{imp.source}:{imp.line} subpackage {unknown!r} has no floor in LAYERS")
        elif FLOOR[dst] >= FLOOR[src]:
            way = "up" if FLOOR[dst] > FLOOR[src] else "sideways"
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} ({way}: {src} -> {dst})")
    return bad


def import_cycles(imports: Iterable[Import], modules: Iterable[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), and self-imports."""
    modules = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        target = imp.target
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in modules and target != imp.source:
            graph[imp.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def all_imports(root: Path = ROOT) -> tuple[list[Import], dict[str, Path]]:
    modules = module_files(package_dirs(root))
    imports = []
    for name, path in modules.items():
        imports += imports_of(
            name, path.read_text(), is_package=path.name == "__init__.py", known=modules
        )
    return imports, modules


# ---------------------------------------------------------------------------- the checks
def test_every_import_points_down():
    imports, _ = all_imports()
    assert layer_violations(imports) == []


def test_no_module_circles():
    imports, modules = all_imports()
    assert import_cycles(imports, modules) == []


def test_every_subpackage_has_a_floor():
    _, modules = all_imports()
    subs = {subpackage(m) for m in modules} - {None}
    assert subs == set(FLOOR), "add the new subpackage to LAYERS here and in the README"


def test_mapping_covers_the_owner_folders():
    dirs = package_dirs()
    for folder in ("planning", "dose_kernels", "cryo_iceball", "dicom_io", "qa"):
        assert dirs[f"{TOP}.{folder}"] == ROOT / folder


# ---------------------------------------------------------------------------- the checker
_UPWARD = """
def f():
    from brachycryo.planning.pipeline import make_plan  # a function-level import, upward
    return make_plan
"""


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("brachycryo.core.grid", _UPWARD, "up: core -> planning"),
        ("brachycryo.qa.dvh", "import brachycryo.postimplant.workflow\n", "up: qa -> postimplant"),
        ("brachycryo.planning.case", "from brachycryo.cohort import batch\n", "sideways"),
        ("brachycryo.reports.x", "from ..cli import main\n", "up: reports -> cli"),
        ("brachycryo", "from brachycryo.core import grid\n", "top package imports"),
    ],
)
def test_checker_catches_a_wrong_import(module, source, expected):
    _, modules = all_imports()
    is_pkg = module == TOP
    found = imports_of(module, source, is_package=is_pkg, known=modules)
    bad = layer_violations(found)
    assert len(bad) == 1 and expected in bad[0]


def test_checker_accepts_downward_and_relative_imports():
    _, modules = all_imports()
    source = "from brachycryo.core.grid import Grid\nfrom . import dvh\nimport numpy\n"
    found = imports_of("brachycryo.qa.metrics", source, is_package=False, known=modules)
    assert {i.target for i in found} == {"brachycryo.core.grid", "brachycryo.qa.dvh"}
    assert layer_violations(found) == []


def test_checker_finds_a_circle():
    a = Import("brachycryo.qa.a", "brachycryo.qa.b", 1)
    b = Import("brachycryo.qa.b", "brachycryo.qa.c.thing", 1)
    c = Import("brachycryo.qa.c", "brachycryo.qa.a", 1)
    mods = ["brachycryo.qa.a", "brachycryo.qa.b", "brachycryo.qa.c", "brachycryo.qa.d"]
    assert import_cycles([a, b, c], mods) == [mods[:3]]
    assert import_cycles([a, b], mods) == []
