"""``python -m brachycryo.cli``: the same as the ``brachycryo`` command."""

import sys

from brachycryo.cli import main

sys.exit(main())
