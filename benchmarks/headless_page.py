"""Headless Chromium for the benchmark pages (visual_comparison.py, audio_listening.py): find the browser,
take a screenshot of a page and check that it is not blank, and the `--check-browser` step of a script.

Chromium runs with the flags this machine needs (no sandbox, no GPU, no background networking: the network
is closed) and a fresh profile in a temporary folder.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

__all__ = ["CHROMIUM_FLAGS", "find_chromium", "run_chromium", "screenshot", "check_not_blank", "browser_check_step"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars")


def find_chromium() -> str | None:
    """The path of chromium or chromium-browser on PATH, or None."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(chromium: str, tmp: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run headless `chromium` with a profile in `tmp` and the extra `args` (text output captured)."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(page: Path, chromium: str, tmp: Path, window: str, timeout: float) -> np.ndarray:
    """A screenshot of `page` at `window` ("W,H") as (H, W, 3) uint8; RuntimeError if chromium wrote none."""
    shot = tmp / "screenshot.png"
    proc = run_chromium(chromium, tmp, f"--screenshot={shot}", f"--window-size={window}", page.resolve().as_uri(),
                        timeout=timeout)
    if not shot.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    with Image.open(shot) as im:
        return np.asarray(im.convert("RGB"))


def check_not_blank(arr: np.ndarray) -> dict[str, Any]:
    """Raise RuntimeError if a screenshot (H, W, 3) uint8 looks blank (pixel std < 5 or < 100 colours);
    return its size, std and colour count."""
    colours = len(np.unique(arr.reshape(-1, 3)[::7], axis=0))
    std = float(arr.std())
    if std < 5.0 or colours < 100:
        raise RuntimeError(f"the screenshot looks blank (pixel std {std:.1f}, {colours} colours)")
    return {"screenshot": f"{arr.shape[1]}x{arr.shape[0]}", "pixel_std": round(std, 1), "colours": colours}


def browser_check_step(page: Path, check: Callable[[Path, str], dict[str, Any]], prog: str,
                       say: Callable[[str], None]) -> int:
    """A script's --check-browser step: run check(page, chromium); 0 when it passed or chromium is missing
    (said, with the install line), 1 (said on stderr) when it failed."""
    chromium = find_chromium()
    if chromium is None:
        say("--check-browser: chromium (or chromium-browser) is not on PATH; skipped (Debian: apt-get install -y chromium)")
        return 0
    try:
        result = check(page, chromium)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"{prog}: error: browser check failed: {exc}", file=sys.stderr)
        return 1
    say(f"--check-browser: ok ({json.dumps(result)})")
    return 0
