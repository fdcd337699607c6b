"""The command line starts without importing the numerical stack (issue 22: a fast start).

Building the parser (what ``brachycryo --help`` does) must import no heavy package; each
command imports its workers when it runs.  Checked through ``sys.modules`` in a fresh
interpreter, not by timing (the start-up time is measured by ``benchmarks/cli_startup.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "scipy", "pydicom", "numba", "matplotlib", "skimage", "tqdm", "cupy")

SCRIPT = f"""
import json, sys
from brachycryo.cli import build_parser
build_parser().format_help()
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_building_the_parser_imports_no_heavy_module():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_parser_defaults_repeated_in_the_cli_match_the_library():
    """Defaults the CLI names itself (to stay light) equal the library's own."""
    from brachycryo.cli import phantom, postimplant
    from brachycryo.phantoms.anatomy import SITES
    from brachycryo.postimplant import seed_comparison, workflow

    assert tuple(sorted(SITES)) == phantom.SITE_NAMES
    assert postimplant.DOSE_SPACING_MM == workflow.DOSE_SPACING_MM
    assert postimplant.DOSE_MARGIN_MM == workflow.DOSE_MARGIN_MM
    assert postimplant.MIGRATION_GATE_MM == seed_comparison.MIGRATION_GATE_MM
