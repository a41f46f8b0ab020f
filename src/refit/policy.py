"""The retrain governor: decides whether a drift (or decay) signal triggers a retrain.

Signals come from the scheduled drift check (``source="drift-check"``) and from alert
webhooks (``source="alert"``, with the alert's id). :func:`decide` is pure: given the signal,
the ledger of past decisions, the time and the config, it returns a :class:`Decision`. The
rules, in the order they are applied:

1. ``none`` / ``no-drift``: the signal shows neither drift nor decay.
2. ``suppress`` / ``duplicate``: this data window and champion already triggered once
   (the fingerprint of window and champion version), so a replayed alert or a re-run check
   never retrains twice for the same evidence.
3. ``suppress`` / ``k-of-n``: fewer than k of the last n windows (this one included) showed
   drift, so one noisy window does not retrain.
4. ``suppress`` / ``cooldown``: the last trigger was less than ``cooldown_hours`` ago.
5. ``suppress`` / ``daily-cap``: ``daily_cap`` triggers already happened this UTC day.
6. ``trigger`` / ``drift``.

Every decision, with its signal, is appended to an append-only ledger in the store: one object
per entry under ``governor/<model>/ledger/<seq:012d>.json``, claimed with ``put_if_absent``.
:class:`Governor` reads the ledger, decides, and claims the next sequence number; when another
writer claimed it first it reads again and decides again, so two concurrent signals are decided
one after the other and cannot both trigger inside a cooldown.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from refit.config import DriftConfig
from refit.errors import PreconditionFailedError, StoreError
from refit.io.base import Store

SignalSource = Literal["drift-check", "alert"]
Action = Literal["trigger", "suppress", "none"]
Reason = Literal["drift", "no-drift", "duplicate", "k-of-n", "cooldown", "daily-cap"]

_SEQ_DIGITS = 12
_MAX_ATTEMPTS = 200


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DriftSignal(_Record):
    """Evidence that a model's data or performance moved, for one window of data."""

    model: str
    source: SignalSource
    window_start: AwareDatetime
    window_end: AwareDatetime
    champion_version: str | None = Field(None, description="The champion the window was checked against.")
    drift_detected: bool
    decay_detected: bool = False
    alert_id: str | None = Field(None, description="The alert's own id (webhook signals).")
    drift_share: float | None = None
    detail: str | None = Field(None, description="Drifted columns, alert summary: for people.")

    @property
    def present(self) -> bool:
        """Whether this window shows drift or decay."""
        return self.drift_detected or self.decay_detected

    @property
    def window(self) -> tuple[datetime, datetime]:
        return _utc(self.window_start), _utc(self.window_end)

    @property
    def fingerprint(self) -> str:
        """Identity of the evidence: model, data window and champion version."""
        start, end = self.window
        text = "|".join([self.model, start.isoformat(), end.isoformat(), self.champion_version or ""])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class Decision(_Record):
    """What the governor decided about one signal, and why."""

    action: Action
    reason: Reason
    detail: str
    fingerprint: str
    at: AwareDatetime

    @property
    def trigger(self) -> bool:
        return self.action == "trigger"


class LedgerEntry(_Record):
    """One ledger object: the signal and the decision taken on it."""

    seq: int = Field(ge=0)
    signal: DriftSignal
    decision: Decision


def _recent_windows(
    signal: DriftSignal, ledger: Sequence[LedgerEntry], n: int
) -> list[tuple[tuple[datetime, datetime], bool]]:
    """The last ``n`` distinct windows up to this signal's, each with whether it drifted."""
    present: dict[tuple[datetime, datetime], bool] = {}
    for entry in ledger:
        present[entry.signal.window] = present.get(entry.signal.window, False) or entry.signal.present
    present[signal.window] = present.get(signal.window, False) or signal.present
    end = signal.window[1]
    windows = sorted((w for w in present if w[1] <= end), key=lambda w: (w[1], w[0]))
    return [(w, present[w]) for w in windows[-n:]]


def decide(signal: DriftSignal, ledger: Sequence[LedgerEntry], now: datetime, cfg: DriftConfig) -> Decision:
    """Trigger, suppress or do nothing about ``signal`` (see the module docstring for the rules).

    Args:
        signal: The new evidence.
        ledger: Past entries of this model's ledger (any order; other models' are ignored).
        now: The decision time (timezone-aware).
        cfg: ``k_of_n``, ``cooldown_hours`` and ``daily_cap``.
    """
    now = _utc(now)
    past = [e for e in ledger if e.signal.model == signal.model]
    fingerprint = signal.fingerprint

    def made(action: Action, reason: Reason, detail: str) -> Decision:
        return Decision(action=action, reason=reason, detail=detail, fingerprint=fingerprint, at=now)

    if not signal.present:
        return made("none", "no-drift", "no drift or decay in this window")

    triggers = sorted((e for e in past if e.decision.trigger), key=lambda e: e.decision.at)
    for entry in triggers:
        if entry.decision.fingerprint == fingerprint:
            return made(
                "suppress",
                "duplicate",
                f"this window and champion already triggered (entry {entry.seq})",
            )

    k, n = cfg.k_of_n
    windows = _recent_windows(signal, past, n)
    hits = sum(drifted for _, drifted in windows)
    if hits < k:
        return made("suppress", "k-of-n", f"k of n not reached: {hits} of the last {n} windows drifted, need {k}")

    if triggers:
        last = _utc(triggers[-1].decision.at)
        until = last + timedelta(hours=cfg.cooldown_hours)
        if now < until:
            return made(
                "suppress", "cooldown", f"last trigger at {last.isoformat()}; cooldown until {until.isoformat()}"
            )

    today = now.date()
    triggered_today = sum(_utc(e.decision.at).date() == today for e in triggers)
    if triggered_today >= cfg.daily_cap:
        return made("suppress", "daily-cap", f"{triggered_today} triggers today (UTC), the cap is {cfg.daily_cap}")

    evidence = signal.detail or (
        "performance decay" if signal.decay_detected and not signal.drift_detected else "feature drift"
    )
    return made("trigger", "drift", f"{hits} of the last {n} windows drifted or decayed; this one: {evidence}")


class Ledger:
    """The append-only decision ledger of one model in the store.

    Entries never change once written, so entries already read are kept and only new keys
    are fetched on the next read.
    """

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model
        self.prefix = f"governor/{model}/ledger/"
        self._cache: dict[int, LedgerEntry] = {}

    def key(self, seq: int) -> str:
        return f"{self.prefix}{seq:0{_SEQ_DIGITS}d}.json"

    def entries(self) -> list[LedgerEntry]:
        """All entries, in sequence order."""
        for key in self.store.list(self.prefix):
            name = key[len(self.prefix) :]
            stem = name.removesuffix(".json")
            if not (name.endswith(".json") and stem.isdigit() and len(stem) == _SEQ_DIGITS):
                continue
            seq = int(stem)
            if seq not in self._cache:
                self._cache[seq] = LedgerEntry.model_validate_json(self.store.get_bytes(key))
        return [self._cache[s] for s in sorted(self._cache)]

    def next_seq(self) -> int:
        entries = self.entries()
        return entries[-1].seq + 1 if entries else 0

    def claim(self, seq: int, signal: DriftSignal, decision: Decision) -> LedgerEntry:
        """Write entry ``seq``. Raises PreconditionFailedError when it is already taken."""
        entry = LedgerEntry(seq=seq, signal=signal, decision=decision)
        self.store.put_if_absent(self.key(seq), _dump(entry))
        self._cache[seq] = entry
        return entry

    def append(self, signal: DriftSignal, decision: Decision) -> LedgerEntry:
        """Write an entry at the next free sequence number, retrying past concurrent writers."""
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return self.claim(self.next_seq(), signal, decision)
            except PreconditionFailedError:
                _backoff(attempt)
        raise StoreError(
            f"could not append to {self.store.uri_for(self.prefix.rstrip('/'))} after {_MAX_ATTEMPTS} tries"
        )


class Governor:
    """Decides on signals for one model and records every decision in its ledger."""

    def __init__(self, store: Store, model: str, cfg: DriftConfig) -> None:
        self.ledger = Ledger(store, model)
        self.model = model
        self.cfg = cfg

    def submit(self, signal: DriftSignal, now: datetime | None = None) -> LedgerEntry:
        """Decide on ``signal`` and append the decision; returns the ledger entry.

        The decision is taken on the ledger as read; if another writer appended meanwhile,
        the ledger is read again and the decision taken again before it is written.
        """
        if signal.model != self.model:
            raise ValueError(f"signal is for model {signal.model!r}, this governor is for {self.model!r}")
        for attempt in range(_MAX_ATTEMPTS):
            entries = self.ledger.entries()
            at = _utc(now) if now is not None else datetime.now(UTC)
            decision = decide(signal, entries, at, self.cfg)
            seq = entries[-1].seq + 1 if entries else 0
            try:
                return self.ledger.claim(seq, signal, decision)
            except PreconditionFailedError:
                _backoff(attempt)
        raise StoreError(f"could not record a decision for {self.model!r} after {_MAX_ATTEMPTS} tries")

    def history(self) -> list[LedgerEntry]:
        return self.ledger.entries()


def _dump(entry: LedgerEntry) -> bytes:
    return json.dumps(entry.model_dump(mode="json"), sort_keys=True).encode()


def _backoff(attempt: int) -> None:
    """A short random pause, so writers that collided do not collide again in step."""
    time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))
