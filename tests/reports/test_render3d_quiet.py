"""The 3-D picture renders without a display and without VTK's X-server warning (#14 item 10)."""

import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from brachycryo.core.grid import Grid
    from brachycryo.reports.render3d import render_plan_3d

    g = Grid.from_bounds(np.array([-10.0, -10, -10]), np.array([10.0, 10, 10]), 2.0)
    m = np.zeros(g.shape, bool)
    m[3:8, 3:8, 3:8] = True
    png, why = render_plan_3d(tumour_mask=m, tumour_grid=g, seeds_mm=np.zeros((1, 3)))
    print("PNG" if png else f"NONE {why}")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X/EGL choice is Linux's")
@pytest.mark.skipif(ctypes.util.find_library("EGL") is None, reason="no libEGL on this machine")
def test_headless_render_says_nothing_about_x():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "VTK_DEFAULT_OPENGL_WINDOW")}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "PNG", run.stdout + run.stderr
    assert "X server" not in run.stderr, run.stderr
