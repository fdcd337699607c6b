"""Headless Chromium (Debian package ``chromium``) for the page tests: run it on a page
from disk, fail on a script error or on any request the page's Content-Security-Policy
blocked, read back the state the page writes into the DOM, take screenshots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (.ci/run installs the Debian package)"
)


def chromium(args: list[str], url: str) -> str:
    """Run headless Chromium; fail on a script error or on any request the page's
    Content-Security-Policy blocked (every network source is blocked, so any attempt to
    fetch something shows up as a console message naming the policy)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += ["--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0", *args, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    bad = ("Uncaught", "Refused to", "Content Security Policy")
    assert not [c for c in console if any(b in c for b in bad)], console
    return out.stdout


def states(path: Path, steps: list[str]) -> list[dict]:
    """The page's state after each step (steps run in turn on one page)."""
    dom = chromium(["--dump-dom"], f"{path.as_uri()}#{'|'.join(steps)}")
    m = re.search(r'<pre id="bc-state"[^>]*>([^<]*)</pre>', dom)
    assert m and m.group(1), "the page wrote no state (script error?)"
    out = json.loads(m.group(1).replace("&amp;", "&"))
    return out if len(steps) > 1 else [out]


def state(path: Path, hash_: str) -> dict:
    return states(path, [hash_])[0]


def screenshot(path: Path, hash_: str, tmp: Path) -> np.ndarray:
    from PIL import Image

    png = tmp / f"shot{abs(hash(hash_))}.png"
    chromium([f"--screenshot={png}", "--window-size=560,560"], f"{path.as_uri()}#{hash_}")
    return np.asarray(Image.open(png).convert("RGB")).astype(int)
