"""The retrain governor: decides whether a drift (or decay) signal triggers a retrain.

Signals come from the scheduled drift check (``source="drift-check"``) and from alert
webhooks (``source="alert"``, with the alert's id). :func:`decide` is pure: given the signal,
the ledger of past decisions, the time and the config, it returns a :class:`Decision`. The
rules, in the order they are applied:

1. ``none`` / ``no-drift``: the signal shows neither drift nor decay.
2. ``suppress`` / ``duplicate``: this evidence and champion already triggered once (the
   fingerprint of the rows a drift check judged, or of an alert's window, and the champion
   version), so a replayed alert or a re-run check never retrains twice for the same evidence.
3. ``suppress`` / ``k-of-n``: fewer than k of the last n windows (this one included) showed
   drift, so one noisy window does not retrain.
4. ``suppress`` / ``cooldown``: the last trigger was less than ``cooldown_hours`` ago.
5. ``suppress`` / ``daily-cap``: ``daily_cap`` triggers already happened this UTC day.
6. ``trigger`` / ``drift``.

Every decision, with its signal, is appended to an append-only ledger in the store: one object
per entry under ``governor/<model>/ledger/<seq:012d>.json``, claimed with ``put_if_absent``.
:class:`Governor` decides on what it knows of the ledger (a :class:`LedgerIndex` kept in
memory) and claims the next sequence number; when another writer claimed it first it reads the
new entries and decides again, so two concurrent signals are decided one after the other and
cannot both trigger inside a cooldown. A decision reads nothing from the store when nobody else
wrote, so its cost does not grow with the ledger; every ``CHECKPOINT_EVERY`` entries the index
is written beside the ledger (``governor/<model>/index.json``), so a new process starts from it
instead of reading every entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from refit.clock import MAX_DECISION_AHEAD
from refit.config import DriftConfig
from refit.errors import NotFoundError, PreconditionFailedError, RefitError, StoreError
from refit.io.base import Store
from refit.io.layout import LAYOUT

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
    evidence: str | None = Field(
        None, description="Digest of the rows judged (drift checks): the same rows are the same evidence."
    )

    @property
    def present(self) -> bool:
        """Whether this window shows drift or decay."""
        return self.drift_detected or self.decay_detected

    @property
    def window(self) -> tuple[datetime, datetime]:
        return _utc(self.window_start), _utc(self.window_end)

    @property
    def fingerprint(self) -> str:
        """Identity of the evidence: model, the rows judged (else the data window) and champion version."""
        start, end = self.window
        where = [f"evidence={self.evidence}"] if self.evidence else [start.isoformat(), end.isoformat()]
        text = "|".join([self.model, *where, self.champion_version or ""])
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


class LedgerIndex:
    """What :func:`decide` needs from a ledger, kept in memory and updated entry by entry.

    The triggers (few: the cooldown and the daily cap bound them) and, per data window, whether
    it drifted (one per window, however many signals named it). Its size grows with time, not
    with the number of signals, so deciding costs the same on a ledger of ten entries or ten
    million.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.last_seq = -1
        self.triggers: list[LedgerEntry] = []
        self.trigger_by_fingerprint: dict[str, LedgerEntry] = {}
        self.windows: dict[tuple[datetime, datetime], bool] = {}

    @classmethod
    def of(cls, model: str, entries: Iterable[LedgerEntry]) -> LedgerIndex:
        index = cls(model)
        for entry in sorted(entries, key=lambda e: e.seq):
            index.add(entry)
        return index

    def add(self, entry: LedgerEntry) -> None:
        """Take one more entry into account (entries of other models only move ``last_seq``)."""
        self.last_seq = max(self.last_seq, entry.seq)
        if entry.signal.model != self.model:
            return
        window = entry.signal.window
        self.windows[window] = self.windows.get(window, False) or entry.signal.present
        if entry.decision.trigger:
            self.triggers.append(entry)
            self.triggers.sort(key=lambda e: e.decision.at)
            self.trigger_by_fingerprint.setdefault(entry.decision.fingerprint, entry)

    def copy(self) -> LedgerIndex:
        other = LedgerIndex(self.model)
        other.last_seq = self.last_seq
        other.triggers = list(self.triggers)
        other.trigger_by_fingerprint = dict(self.trigger_by_fingerprint)
        other.windows = dict(self.windows)
        return other

    def recent_windows(self, signal: DriftSignal, n: int) -> list[tuple[tuple[datetime, datetime], bool]]:
        """The last ``n`` distinct windows up to this signal's, each with whether it drifted."""
        present = dict(self.windows)
        present[signal.window] = present.get(signal.window, False) or signal.present
        end = signal.window[1]
        windows = sorted((w for w in present if w[1] <= end), key=lambda w: (w[1], w[0]))
        return [(w, present[w]) for w in windows[-n:]]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "last_seq": self.last_seq,
            "triggers": [e.model_dump(mode="json") for e in self.triggers],
            "windows": [[s.isoformat(), e.isoformat(), p] for (s, e), p in sorted(self.windows.items())],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerIndex:
        index = cls(str(data["model"]))
        for raw in data["triggers"]:
            index.add(LedgerEntry.model_validate(raw))
        index.windows = {(datetime.fromisoformat(s), datetime.fromisoformat(e)): bool(p) for s, e, p in data["windows"]}
        index.last_seq = int(data["last_seq"])
        return index


def decide(
    signal: DriftSignal, ledger: Sequence[LedgerEntry] | LedgerIndex, now: datetime, cfg: DriftConfig
) -> Decision:
    """Trigger, suppress or do nothing about ``signal`` (see the module docstring for the rules).

    Args:
        signal: The new evidence.
        ledger: Past entries of this model's ledger (any order; other models' are ignored), or
            their :class:`LedgerIndex`.
        now: The decision time (timezone-aware).
        cfg: ``k_of_n``, ``cooldown_hours`` and ``daily_cap``.
    """
    now = _utc(now)
    index = ledger if isinstance(ledger, LedgerIndex) else LedgerIndex.of(signal.model, ledger)
    if index.model != signal.model:
        raise ValueError(f"signal is for model {signal.model!r}, the ledger is {index.model!r}'s")
    fingerprint = signal.fingerprint

    def made(action: Action, reason: Reason, detail: str) -> Decision:
        return Decision(action=action, reason=reason, detail=detail, fingerprint=fingerprint, at=now)

    if not signal.present:
        return made("none", "no-drift", "no drift or decay in this window")

    same = index.trigger_by_fingerprint.get(fingerprint)
    if same is not None:
        return made("suppress", "duplicate", f"this window and champion already triggered (entry {same.seq})")

    k, n = cfg.k_of_n
    windows = index.recent_windows(signal, n)
    hits = sum(drifted for _, drifted in windows)
    if hits < k:
        return made("suppress", "k-of-n", f"k of n not reached: {hits} of the last {n} windows drifted, need {k}")

    triggers = index.triggers
    if triggers:
        last = _utc(triggers[-1].decision.at)
        until = last + timedelta(hours=cfg.cooldown_hours)
        if now < until:
            # a trigger after this decision's time (an earlier window checked late) counts too, so
            # back-filling old windows never retrains faster than the cooldown allows
            after = f", after this window's time {now.isoformat()}" if last > now else ""
            return made(
                "suppress", "cooldown", f"last trigger at {last.isoformat()}{after}; cooldown until {until.isoformat()}"
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

    Objects never change once written. Each is named by the sequence number of its first
    entry and holds one entry, or several consecutive ones (``{"entries": [...]}``) when a
    governor recorded decisions taken at the same moment in one write. :meth:`entries` reads
    them all (for people: history, audits); deciding never does: the :class:`Governor` keeps a
    :class:`LedgerIndex` and reads only the objects written since it last looked.
    """

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model
        self.prefix = LAYOUT.governor_ledger(model)
        self.checkpoint_key = LAYOUT.governor_index(model)

    def key(self, seq: int) -> str:
        return f"{self.prefix}{seq:0{_SEQ_DIGITS}d}.json"

    def seqs(self) -> list[int]:
        """First sequence numbers of every object (one listing of the ledger)."""
        out = []
        for key in self.store.list(self.prefix):
            name = key[len(self.prefix) :]
            stem = name.removesuffix(".json")
            if name.endswith(".json") and stem.isdigit() and len(stem) == _SEQ_DIGITS:
                out.append(int(stem))
        return sorted(out)

    def read(self, seq: int) -> list[LedgerEntry] | None:
        """The entries of the object that starts at ``seq``, or None when nobody wrote it yet."""
        try:
            data = json.loads(self.store.get_bytes(self.key(seq)))
        except NotFoundError:
            return None
        if isinstance(data, dict) and "entries" in data:
            return [LedgerEntry.model_validate(e) for e in data["entries"]]
        return [LedgerEntry.model_validate(data)]

    def entries(self) -> list[LedgerEntry]:
        """All entries, in sequence order."""
        out = []
        for seq in self.seqs():
            out.extend(self.read(seq) or [])
        return sorted(out, key=lambda e: e.seq)

    def next_seq(self) -> int:
        seqs = self.seqs()
        if not seqs:
            return 0
        last = self.read(seqs[-1]) or []
        return max((e.seq for e in last), default=seqs[-1]) + 1

    def claim(self, seq: int, signal: DriftSignal, decision: Decision) -> LedgerEntry:
        """Write entry ``seq``. Raises PreconditionFailedError when it is already taken."""
        entry = LedgerEntry(seq=seq, signal=signal, decision=decision)
        self.claim_all([entry])
        return entry

    def claim_all(self, entries: Sequence[LedgerEntry]) -> None:
        """Write consecutive entries as one object, named by the first (PreconditionFailedError if taken)."""
        if not entries or [e.seq for e in entries] != list(range(entries[0].seq, entries[0].seq + len(entries))):
            raise ValueError("claim_all needs consecutive entries")
        if len(entries) == 1:
            data = _dump(entries[0])
        else:
            data = json.dumps({"entries": [e.model_dump(mode="json") for e in entries]}, sort_keys=True).encode()
        self.store.put_if_absent(self.key(entries[0].seq), data)

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

    def load_checkpoint(self) -> LedgerIndex | None:
        """The index as of some sequence number (written every ``CHECKPOINT_EVERY`` entries)."""
        try:
            return LedgerIndex.from_json(json.loads(self.store.get_bytes(self.checkpoint_key)))
        except NotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # unreadable: rebuild from the entries
            return None

    def write_checkpoint(self, index: LedgerIndex) -> None:
        """Entries never change, so an index of entries 0..n stays true: last writer wins."""
        self.store.put_bytes(self.checkpoint_key, json.dumps(index.to_json(), sort_keys=True).encode())


CHECKPOINT_EVERY = 1000
_MAX_BATCH = 500


@dataclass
class _Pending:
    signal: DriftSignal
    now: datetime | None
    before_trigger: Callable[[Decision], None] | None
    entry: LedgerEntry | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.entry is not None or self.error is not None


class Governor:
    """Decides on signals for one model and records every decision in its ledger.

    Keep one per model for the life of the process; it is safe to share between threads. It
    holds the ledger's :class:`LedgerIndex`, built once (from the last checkpoint and the
    objects after it, or from a listing when there is none) and then kept in step, so a
    decision reads nothing from the store unless another writer appended meanwhile. Signals
    submitted while a write is in flight are decided in arrival order and recorded together in
    the next write (a group commit): one store write per moment, not per signal.
    """

    def __init__(
        self,
        store: Store,
        model: str,
        cfg: DriftConfig,
        checkpoint_every: int = CHECKPOINT_EVERY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = Ledger(store, model)
        self.clock = clock
        self.model = model
        self.cfg = cfg
        self.checkpoint_every = checkpoint_every
        self._index: LedgerIndex | None = None
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()  # held while deciding and writing; guards the index

    @property
    def index(self) -> LedgerIndex:
        if self._index is None:
            index = self.ledger.load_checkpoint()
            if index is None or index.model != self.model:
                index = LedgerIndex.of(self.model, self.ledger.entries())
            self._index = index
            self._catch_up()
        return self._index

    def _catch_up(self) -> None:
        """Take in the objects other writers appended after the ones this index has seen."""
        index = self._index
        assert index is not None
        while (entries := self.ledger.read(index.last_seq + 1)) is not None:
            for entry in entries:
                index.add(entry)

    def submit(
        self,
        signal: DriftSignal,
        now: datetime | None = None,
        before_trigger: Callable[[Decision], None] | None = None,
    ) -> LedgerEntry:
        """Decide on ``signal`` and append the decision; returns the ledger entry.

        The decision is taken on the ledger as this governor knows it (with the decisions
        queued before it) and written at the next sequence number; when another writer took
        that number first, the new entries are read and the decisions taken again.

        Args:
            signal: The evidence.
            now: Decision time (default: when it is decided): the data's clock (a window's end,
                an alert's, a replay's), never more than :data:`MAX_DECISION_AHEAD` after this
                governor's clock. A later one is taken as that: a decision dated 2099 (a signed
                alert's window, a mistyped ``--as-of``) started a cooldown until 2099 for every
                later signal, and a series of future dates passed the cooldown and the daily cap.
            before_trigger: Called with a trigger decision before it is written; when it
                raises, nothing is recorded for this signal and the error propagates (so
                whatever must exist before a trigger counts, such as an outbox entry, is never
                missing behind one).
        """
        if signal.model != self.model:
            raise ValueError(f"signal is for model {signal.model!r}, this governor is for {self.model!r}")
        at = None if now is None else min(_utc(now), self.clock() + MAX_DECISION_AHEAD)
        pending = _Pending(signal, at, before_trigger)
        with self._queue_lock:
            self._queue.append(pending)
        with self._commit_lock:
            while not pending.done:  # whoever holds the lock commits what is queued, in order
                self._commit_queued()
        if pending.error is not None:
            raise pending.error
        assert pending.entry is not None
        return pending.entry

    def _commit_queued(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
        try:
            self._commit(batch)
        except Exception as exc:  # noqa: BLE001 - reading the ledger failed: every waiting signal gets it
            for pending in batch:
                if not pending.done:
                    pending.error = exc

    def _commit(self, batch: list[_Pending]) -> None:
        index = self.index
        for attempt in range(_MAX_ATTEMPTS):
            scratch = index.copy()
            decided: list[tuple[_Pending, LedgerEntry]] = []
            for pending in batch:
                if pending.error is not None:
                    continue  # its outbox write failed on an earlier attempt: not recorded
                at = pending.now or datetime.now(UTC)
                decision = decide(pending.signal, scratch, at, self.cfg)
                if decision.trigger and pending.before_trigger is not None:
                    try:
                        pending.before_trigger(decision)
                    except Exception as exc:  # noqa: BLE001 - handed to the caller that submitted it
                        pending.error = exc
                        continue
                entry = LedgerEntry(seq=scratch.last_seq + 1, signal=pending.signal, decision=decision)
                scratch.add(entry)
                decided.append((pending, entry))
            if not decided:
                return
            try:
                self.ledger.claim_all([entry for _, entry in decided])
            except PreconditionFailedError:
                self._catch_up()
                _backoff(attempt)
                continue
            except Exception as exc:  # noqa: BLE001 - every signal of the batch gets the store's error
                for pending, _ in decided:
                    pending.error = exc
                return
            every = self.checkpoint_every
            checkpoint = every and (scratch.last_seq + 1) // every > (index.last_seq + 1) // every
            self._index = scratch
            for pending, entry in decided:
                pending.entry = entry
            if checkpoint:
                with contextlib.suppress(RefitError):  # an optimisation: a failed one costs a listing later
                    self.ledger.write_checkpoint(scratch)
            return
        error = StoreError(f"could not record a decision for {self.model!r} after {_MAX_ATTEMPTS} tries")
        for pending in batch:
            pending.error = pending.error or error

    def trigger_for(self, fingerprint: str) -> LedgerEntry | None:
        """The trigger entry recorded for this evidence, if any (after reading newer entries)."""
        with self._commit_lock:
            self.index  # noqa: B018 - loads it
            self._catch_up()
            return self.index.trigger_by_fingerprint.get(fingerprint)

    def history(self) -> list[LedgerEntry]:
        return self.ledger.entries()


def _dump(entry: LedgerEntry) -> bytes:
    return json.dumps(entry.model_dump(mode="json"), sort_keys=True).encode()


def _backoff(attempt: int) -> None:
    """A short random pause, so writers that collided do not collide again in step."""
    time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))
