"""The browser the UI tests drive: Debian's ``chromium`` package, launched by Playwright.

Playwright never downloads a browser here. ``make test`` installs the package (``make
system-deps``: apt-get when it is missing and make runs as root); without it the browser tests
fail with :data:`HOW_TO_ENABLE`, never skip (a skipped UI test proves nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"  # the Makefile's CHROMIUM: where Debian's package puts it
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_ENABLE = "run 'sudo make system-deps' (Debian: apt-get install chromium), which 'make test' does as root"


def chromium_path(path: str = CHROMIUM) -> str:
    """``path`` when a browser is installed there; otherwise a RuntimeError that says how to install it."""
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"the browser tests need Chromium at {path}, not installed: {HOW_TO_ENABLE}")
    return path
