"""How refit tries again: after losing a race to another writer, and while a store is down.

Two situations, two policies, both here so they are chosen once:

* :func:`contended` paces an optimistic write (compare-and-swap, ``put_if_absent``) that lost
  to a concurrent writer: re-read and try again at once, then after a short random pause that
  grows a little with each loss, so writers that collided do not collide again in step.
* :func:`doubling` is the wait before the next try at a store that keeps failing: doubled on
  each failure, up to a ceiling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

#: Longest pause between two tries of a contended write, in seconds.
MAX_CONTENDED_PAUSE_S = 0.05


def contention_pause(attempt: int) -> None:
    """Sleep a random moment before try ``attempt + 1`` of a contended write."""
    time.sleep(random.uniform(0, min(MAX_CONTENDED_PAUSE_S, 0.002 * (attempt + 1))))


def contended(limit: int) -> Iterator[int]:
    """Attempt numbers ``0 .. limit - 1`` of a contended write, pausing before each retry.

    The loop body returns on success and ``continue``s when it lost; after the last attempt
    the caller raises its own error.
    """
    for attempt in range(limit):
        if attempt:
            contention_pause(attempt - 1)
        yield attempt


def doubling(failures: int, first_s: float, longest_s: float) -> float:
    """The wait after ``failures`` (>= 1) failures in a row: ``first_s``, doubled each time, capped."""
    return min(longest_s, first_s * 2.0 ** min(failures - 1, 60))
