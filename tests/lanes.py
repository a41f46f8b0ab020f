"""How many times the fast lane repeats a randomised check.

``make test-fast`` (the edit loop) sets ``REFIT_TEST_LANE=fast``; every other run (``make test``,
CI, a plain ``python -m pytest``) does not, and runs the full counts. A property test or a race
test that checks one concept over many generated cases or rounds runs a few of them in the fast
lane and all of them everywhere else: the same test, the same assertions, fewer repetitions.
"""

from __future__ import annotations

import os

#: True under ``make test-fast``.
FAST_LANE: bool = os.environ.get("REFIT_TEST_LANE") == "fast"


def repeats(full: int, fast: int) -> int:
    """``fast`` in the fast lane, ``full`` everywhere else (``fast`` is at least 1 and under ``full``)."""
    assert 1 <= fast < full, (fast, full)
    return fast if FAST_LANE else full
