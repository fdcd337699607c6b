"""``python -m brachycryo.cli``: the same as the ``brachycryo`` command."""

import sys

from brachycryo.cli import entry_point

sys.exit(entry_point())
