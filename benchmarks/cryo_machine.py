"""Machine description and peak-memory helpers shared by the cryo benchmarks."""

from __future__ import annotations

import os
import platform
import resource
import sys


def machine_info() -> dict:
    import numba
    import numpy

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": load,
        "note": "shared development machine (2 cores used by several engineers): timings are "
        "contended; ratios within one run are more meaningful than absolute times",
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
