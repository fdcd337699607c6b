"""``brachycryo demo OUT_DIR``: the phantom, a zoned plan of its bulky lesion and its metastases."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from brachycryo.cli.plan import add_common_options, execute


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end-to-end example: phantom patient + zoned seed/cryo plan",
        description=(
            "Write the abdominal phantom, then plan it with planning/examples/"
            "demo_abdomen.toml: cryo for the core of the bulky mass and the liver metastasis, "
            "seeds for the bulky mass's margin and the abdominal-wall metastasis."
        ),
    )
    p.add_argument("out_dir", help="output folder")
    add_common_options(p)
    p.set_defaults(func=run, command_name="demo")


def run(args: argparse.Namespace) -> int:
    import tomllib

    from brachycryo.planning.spec import parse_plan_spec

    out = Path(args.out_dir)
    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml").read_text()
    spec = parse_plan_spec(tomllib.loads(text), base_dir=out, source=out / "plan.toml")
    # plan.toml is written with the plan's outputs: all of them, or none
    return execute(spec, out, args, extra_files={"plan.toml": text})
