"""``brachycryo demo OUT_DIR``: the phantom, a zoned plan of its bulky lesion and its metastases."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from brachycryo.cli.plan import add_common_options, execute
from brachycryo.core.atomic import write_text_atomic


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
    from brachycryo.planning.spec import load_plan_spec

    out = Path(args.out_dir)
    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml").read_text()
    spec_path = out / "plan.toml"
    write_text_atomic(spec_path, text, overwrite=args.overwrite)
    return execute(load_plan_spec(spec_path), out, args)
