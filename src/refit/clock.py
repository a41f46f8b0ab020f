"""Time rules the governor and the webhook receiver share (standard library only: the receiver
imports this without pandas).

A decision is dated on the data's clock (a window's end, an alert's, a replay's), never more than
:data:`MAX_DECISION_AHEAD` after the wall clock: a monitor's clock skew, or a window labelled by
the hour it closes, fits; a date years ahead does not (it would start a cooldown that long).
"""

from __future__ import annotations

from datetime import timedelta

#: How far ahead of the wall clock a decision may be dated: the webhook refuses alerts beyond it
#: (422), the governor caps any later ``now`` at it.
MAX_DECISION_AHEAD = timedelta(hours=1)
