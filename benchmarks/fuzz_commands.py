"""Command-level fuzzing: mutated plan specs, ice-ball configs and CLI arguments through
``plan``, ``dose``, ``dvh`` and ``iceball``, run in process on a tiny case through writing.

Each case mutates one thing of a valid run: a TOML value set to NaN, ±inf, a negative,
zero, a huge number, a string, a boolean, a list or a table; a key removed; an unknown key
added; or one CLI option given NaN, inf, a negative, zero, a huge or tiny number, text or
nothing, an unknown option, a required option left out.  The oracle (issue 20): the command
either succeeds with every output written, or ends with a clean exit code — a
:class:`~brachycryo.core.errors.BrachyCryoError` as one line naming what is wrong, or
argparse's usage error (exit 2) — and leaves no output and no staging folder.  A raw
exception (a traceback), a multi-line error, a partial output set or a leftover staging
folder is a finding.

Run: ``python -m benchmarks.fuzz_commands [N_PER_COMMAND] [SEED]`` ->
``benchmarks/results/fuzz_commands.json`` (counts per command and outcome, the findings).
The process limits its address space (:data:`ADDRESS_SPACE_LIMIT_BYTES`) so that a
mutation asking for an absurd grid fails to allocate instead of swapping the machine; such
a ``MemoryError`` escapes as a raw exception and is a finding like any other.  The CI test
``tests/cli/test_fuzz_commands.py`` runs a small seeded sample in a subprocess.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import json
import math
import random
import resource
import sys
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Address-space limit of a fuzz process (bytes): an absurd allocation fails at once.
ADDRESS_SPACE_LIMIT_BYTES = 6 * 2**30

BAD_TOML_VALUES: tuple[Any, ...] = (
    math.nan, math.inf, -math.inf, -1.0, 0, 1e12, -1e12, 1e-12, "text", True, [1.0, 2.0],
    {"x": 1.0}, [],
)  # fmt: skip
BAD_ARG_VALUES = ("nan", "inf", "-inf", "-1", "0", "1000", "1e12", "1e-4", "1e-12", "text", "")
STAGING_PREFIX = ".brachycryo-staging-"


@dataclass
class Fixture:
    root: Path
    ct: Path
    rtstruct: Path
    rtplan: Path
    rtdose: Path
    plan_spec: dict
    iceball_config: dict


@dataclass
class Outcome:
    command: str
    mutation: str
    code: int | None
    kind: str  # ok | error | usage | finding
    detail: str = ""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def findings(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == "finding"]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {}
        for o in self.outcomes:
            out.setdefault(o.command, Counter())[o.kind] += 1
        return {k: dict(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- the case
def build_fixture(root: Path) -> Fixture:
    """A coarse phantom (CT + RTSTRUCT), a 4-seed RTPLAN in its metastasis and its RTDOSE."""
    from brachycryo.cli import main
    from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
    from brachycryo.phantoms import build_phantom, write_phantom

    case = build_phantom(seed=2, site="abdomen", spacing_mm=(4.0, 4.0, 4.0))
    files = write_phantom(root / "case", case)
    centre = case.grid.voxel_centres_mm()[case.masks["GTV_Met2"]].mean(axis=0)
    pos = centre + np.array([[-5, 0, -5.0], [-5, 0, 5], [5, 0, -5], [5, 0, 5]])
    src = BrachySource(sk_u=0.7, reference_datetime=dt.datetime(2026, 1, 1), model="6711")
    plan = seed_implant(pos, [1, 1, 2, 2], source=src, referenced_structure_set_uid="1.2.3")
    rtplan = root / "RP.dcm"
    write_seed_rtplan(rtplan, plan, context=files.ct.context)
    rtdose = root / "RD.dcm"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["dose", "--rtplan", str(rtplan), "--spacing-mm", "4", "--out",
                     str(rtdose), "--quiet"])  # fmt: skip
    assert code == 0
    spec = {
        "case": {"ct": str(files.ct_folder), "rtstruct": str(files.rtstruct)},
        "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.8},
        "lesion": [{"roi": "GTV_Met2", "allocation": "seeds", "margin_mm": 3.0,
                    "needle_direction": [0.0, 1.0, 0.0]}],
        "oar": [{"roi": "Bowel", "d2cc_gy": 200.0}],
        "needles": {"spacing_mm": 10.0, "seed_spacing_mm": 10.0},
        "dose": {"spacing_mm": 4.0, "backend": "numpy"},
    }  # fmt: skip
    iceball = {
        "medium": {"tissue": "gel", "initial_temp_c": 37.0},
        "grid": {"spacing_mm": 3.0, "margin_mm": 9.0},
        "probe": [{"model": "generic_2p4mm", "tip_mm": [0.0, 0.0, -10.0],
                   "direction": [0.0, 0.0, 1.0]}],
        "protocol": [{"phase": "freeze", "minutes": 1}],
    }  # fmt: skip
    return Fixture(root, files.ct_folder, files.rtstruct, rtplan, rtdose, spec, iceball)


# ------------------------------------------------------------------------------ TOML out
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def to_toml(doc: dict) -> str:
    """TOML of a spec: top-level tables, arrays of tables; anything deeper inline."""
    lines: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{json.dumps(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- mutations
def _items(doc: Any):
    if isinstance(doc, dict):
        return list(doc.items())
    return list(enumerate(doc)) if isinstance(doc, list) else []


def _leaves(doc: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every key (and list item) of a nested dict/list document."""
    out = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for k, v in items:
        out.append((*path, k))
        out += _leaves(v, (*path, k))
    return out


def _tables(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path] if isinstance(doc, dict) else []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for k, v in items:
        out += _tables(v, (*path, k))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def mutate_doc(doc: dict, rng: random.Random) -> tuple[dict, str]:
    """One mutation of a spec document and its description."""
    doc = copy.deepcopy(doc)
    op = rng.choice(["value", "value", "value", "remove", "unknown"])
    if op == "unknown":
        path = rng.choice(_tables(doc))
        _get(doc, path)["fuzz_unknown_key"] = 1.0
        return doc, f"unknown key in [{'.'.join(map(str, path))}]"
    path = rng.choice(_leaves(doc))
    parent = _get(doc, path[:-1])
    if op == "remove":
        del parent[path[-1]]
        return doc, f"removed {'.'.join(map(str, path))}"
    value = rng.choice(BAD_TOML_VALUES)
    parent[path[-1]] = value
    return doc, f"{'.'.join(map(str, path))} = {value!r}"


def mutate_argv(
    argv: list[str], options: dict[str, int], rng: random.Random
) -> tuple[list[str], str]:
    """One mutation of a command line; ``options`` maps each option to its value count."""
    argv = list(argv)
    op = rng.choice(["value", "value", "value", "drop", "unknown"])
    if op == "unknown":
        return [*argv, "--fuzz-unknown"], "unknown option"
    present = [a for a in argv if a in options]
    if op == "drop" and present:
        opt = rng.choice(present)
        i = argv.index(opt)
        del argv[i : i + 1 + options[opt]]
        return argv, f"dropped {opt}"
    opt = rng.choice(sorted(options))
    value = rng.choice(BAD_ARG_VALUES)
    n = max(1, options[opt])
    if opt in argv:
        i = argv.index(opt)
        del argv[i : i + 1 + options[opt]]
    return [*argv, opt, *([value] * n)], f"{opt} {value!r}"


# ------------------------------------------------------------------------------ running
def _outputs_left(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_case(command: str, argv: list[str], out_dir: Path, mutation: str) -> Outcome:
    """Run one command line in process and judge it (see the module docstring)."""
    from brachycryo.cli import main

    err, out = io.StringIO(), io.StringIO()
    code: int | None
    try:
        with (
            contextlib.chdir(out_dir),  # a relative output path lands where it is judged
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(out),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            code = main(argv)
    except SystemExit as exc:  # argparse's usage error
        code = int(exc.code or 0)
        if code == 2:
            return _judged(command, mutation, 2, "usage", out_dir, expect_outputs=False)
        return Outcome(command, mutation, code, "finding", f"SystemExit {code}")
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.format_exc(limit=-3)
        return Outcome(command, mutation, None, "finding", f"raw {type(exc).__name__}: {tb}")
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    errors = [line for line in lines if f"brachycryo {command}: error:" in line]
    if code in (0, 3) and not errors:  # a plan, feasible or not (3), writes its outputs
        return _judged(command, mutation, code, "ok", out_dir, expect_outputs=True)
    if len(errors) != 1 or code == 0:
        return Outcome(command, mutation, code, "finding", "stderr: " + " | ".join(lines[-5:]))
    return _judged(command, mutation, code, "error", out_dir, expect_outputs=False,
                   detail=errors[0])  # fmt: skip


def _judged(command, mutation, code, kind, out_dir: Path, *, expect_outputs: bool,
            detail: str = "") -> Outcome:  # fmt: skip
    left = _outputs_left(out_dir)
    if any(STAGING_PREFIX in name for name in left):
        return Outcome(command, mutation, code, "finding", f"staging left: {left}")
    if not expect_outputs and left:
        return Outcome(command, mutation, code, "finding", f"outputs left after failing: {left}")
    if expect_outputs and not left:
        return Outcome(command, mutation, code, "finding", "succeeded without outputs")
    return Outcome(command, mutation, code, kind, detail)


def _command_lines(fx: Fixture, out: Path) -> dict[str, tuple[list[str], dict[str, int]]]:
    """The valid command line of each fuzzed argument set and its options' value counts."""
    dose = ["dose", "--rtplan", str(fx.rtplan), "--ct", str(fx.ct), "--spacing-mm", "4",
            "--out", str(out / "RD.dcm"), "--quiet"]  # fmt: skip
    dvh = ["dvh", "--rtdose", str(fx.rtdose), "--rtstruct", str(fx.rtstruct), "--roi",
           "GTV_Met2", "Bowel", "--prescription-gy", "110", "--json", str(out / "m.json"),
           "--csv", str(out / "m.csv"), "--quiet"]  # fmt: skip
    return {
        "dose": (dose, {"--rtplan": 1, "--ct": 1, "--spacing-mm": 1, "--out": 1,
                        "--cutoff-mm": 1, "--model": 1, "--formalism": 1}),
        "dvh": (dvh, {"--rtdose": 1, "--rtstruct": 1, "--roi": 2, "--prescription-gy": 1,
                      "--supersample": 1, "--slice-thickness-mm": 1, "--target": 1,
                      "--json": 1, "--csv": 1}),
    }  # fmt: skip


def fuzz(fx: Fixture, n_per_command: int, seed: int, *, commands=None) -> Report:
    """``n_per_command`` seeded mutations of each command, run and judged."""
    rng = random.Random(seed)
    report = Report()
    commands = commands or ("plan", "iceball", "dose", "dvh")
    for command in commands:
        for i in range(n_per_command):
            out = fx.root / "runs" / f"{command}-{i}"
            out.mkdir(parents=True)
            if command in ("plan", "iceball"):
                base = fx.plan_spec if command == "plan" else fx.iceball_config
                doc, mutation = mutate_doc(base, rng)
                spec = fx.root / "specs" / f"{command}-{i}.toml"
                spec.parent.mkdir(exist_ok=True)
                spec.write_text(to_toml(doc))
                argv = [command, str(spec), "--out", str(out / "result"), "--quiet"]
                if command == "plan":
                    argv.append("--no-report")
            else:
                valid, options = _command_lines(fx, out)[command]
                argv, mutation = mutate_argv(valid, options, rng)
            report.outcomes.append(run_case(command, argv, out, mutation))
    return report


def limit_address_space(limit_bytes: int = ADDRESS_SPACE_LIMIT_BYTES) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))


def run_sample(n_per_command: int, seed: int) -> dict:
    """Build the case in a temporary folder, fuzz, and return counts and findings (JSON
    types); the address space is limited first (call it in a process of its own)."""
    import tempfile
    import time

    limit_address_space()
    with tempfile.TemporaryDirectory() as tmp:
        fx = build_fixture(Path(tmp))
        t0 = time.perf_counter()
        report = fuzz(fx, n_per_command, seed)
        seconds = time.perf_counter() - t0
    return {
        "n_per_command": n_per_command,
        "seed": seed,
        "seconds": round(seconds, 1),
        "counts": report.counts(),
        "n_findings": len(report.findings),
        "findings": [o.__dict__ for o in report.findings],
    }


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import machine_info, write_results

    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 100
    seed = int(args[1]) if len(args) > 1 else 20
    data = {"machine": machine_info(), **run_sample(n, seed)}
    path = write_results("fuzz_commands", data)
    print(json.dumps(data["counts"], indent=1), f"{data['n_findings']} findings -> {path}")
    return 1 if data["n_findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
