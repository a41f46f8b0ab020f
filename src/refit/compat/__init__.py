"""Fast-moving libraries' internals, one module each, behind a version guard.

Where refit reaches past a library's public API (for speed, or for something the public API
does not offer), the shortcut lives in ``refit.compat.<library>`` and nowhere else. Each module
names the versions it was tested with, checks the installed version once, and outside that
range (or when an internal it relies on is gone) takes the library's public path instead: the
same results, only slower. ``tests/unit/test_compat_*.py`` check that both paths agree.

* :mod:`refit.compat.pandera`: the vectorised validation of clean frames (pandera's private
  ``Check._check_fn`` and its engine and backend modules).
* :mod:`refit.compat.evidently`: Evidently's stat tests and reading its drift report
  (the ``evidently.legacy`` namespace and the snapshot's serialised form).
"""

from __future__ import annotations

import importlib.metadata
import logging
import re

log = logging.getLogger(__name__)


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` ("" when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string, for comparing: ``"0.7.23rc1"`` -> ``(0, 7, 23)``.

    Trailing zeros are dropped, so ``"0.8"`` and ``"0.8.0"`` compare equal.
    """
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    parts = [int(part) for part in match.group(0).split(".")] if match else []
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def version_in_range(distribution: str, lowest: str, below: str) -> bool:
    """Is the installed ``distribution`` at least ``lowest`` and older than ``below``?

    Logs once per call when it is not (the caller caches the answer), so a slow fallback is
    visible in the run's log.
    """
    version = installed_version(distribution)
    inside = bool(version) and release(lowest) <= release(version) < release(below)
    if not inside:
        log.warning(
            "%s %s is outside the tested range >=%s,<%s: refit uses its public API (slower)",
            distribution,
            version or "(not installed)",
            lowest,
            below,
        )
    return inside
