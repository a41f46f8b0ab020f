"""Aliases: movable names for versions, moved by compare-and-swap over an append-only log.

The log (``history/<seq>.json``, one move per object, ``put_if_absent``) is the truth and
``aliases.json`` its materialised view; see :mod:`refit.registry` for the guarantees.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from refit.errors import ConflictError, NotFoundError, PreconditionFailedError, RegistryError
from refit.io.base import Store
from refit.registry.records import AliasEvent, ModelVersion, check_alias, default_author, record_json, show_version
from refit.retry import contended

log = logging.getLogger("refit.registry")

CHAMPION = "champion"
MAX_ATTEMPTS = 100


class _Unset(enum.Enum):
    UNSET = "UNSET"


#: ``expected_current`` default: move the alias wherever it points now (recorded as forced).
UNSET = _Unset.UNSET


@dataclass
class _AliasState:
    """Aliases at sequence ``seq``: ``aliases.json`` (``stored_seq``, read at ``token``) plus
    the logged events after it."""

    aliases: dict[str, int]
    seq: int
    token: str | None
    stored_seq: int


class AliasMoves:
    """The alias half of :class:`~refit.registry.Registry`: reading and moving aliases."""

    store: Store
    _clock: Callable[[], datetime]

    if TYPE_CHECKING:  # provided by Registry, the class this half belongs to

        def _event_key(self, name: str, seq: int) -> str: ...

        def _aliases_key(self, name: str) -> str: ...

        def get_version(self, name: str, version: int) -> ModelVersion: ...

        def history(self, name: str, alias: str | None = None) -> list[AliasEvent]: ...

    def _read_event(self, name: str, seq: int) -> AliasEvent | None:
        try:
            return AliasEvent.model_validate_json(self.store.get_bytes(self._event_key(name, seq)))
        except NotFoundError:
            return None

    def _read_state(self, name: str) -> _AliasState:
        try:
            blob = self.store.get(self._aliases_key(name))
            doc = json.loads(blob.data)
            state = _AliasState({a: int(v) for a, v in doc["aliases"].items()}, int(doc["seq"]), blob.version, 0)
        except NotFoundError:
            state = _AliasState({}, 0, None, 0)
        state.stored_seq = state.seq
        # Events logged but not yet folded into aliases.json (a writer died, or is still busy).
        while (event := self._read_event(name, state.seq + 1)) is not None:
            if event.to_version is None:
                state.aliases.pop(event.alias, None)
            else:
                state.aliases[event.alias] = event.to_version
            state.seq = event.seq
        return state

    def _materialise(self, name: str, seq: int) -> None:
        """Fold the log up to at least ``seq`` into ``aliases.json`` (best effort: readers replay)."""
        key = self._aliases_key(name)
        for _ in range(5):
            state = self._read_state(name)
            if state.stored_seq >= seq:
                return
            body = json.dumps({"seq": state.seq, "aliases": dict(sorted(state.aliases.items()))}, indent=2).encode()
            try:
                if state.token is None:
                    self.store.put_if_absent(key, body)
                else:
                    self.store.put_if_unchanged(key, body, state.token)
                return
            except PreconditionFailedError:
                continue
            except Exception as exc:
                log.warning("alias move %d of %s is logged but %s is stale: %s", seq, name, key, exc)
                return

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version, sorted by alias."""
        return dict(sorted(self._read_state(name).aliases.items()))

    def _move(
        self,
        name: str,
        alias: str,
        action: Literal["set", "remove", "rollback"],
        target: Callable[[_AliasState], int | None],
        expected_current: int | None | _Unset,
        reason: str,
        author: str | None,
        forced: bool = False,
        exclusive: bool = False,
    ) -> AliasEvent:
        """Append the event moving ``alias`` to ``target(state)`` (see the module docstring).

        The event at ``state.seq + 1`` is created only if absent, so the move is a
        compare-and-swap against the whole state it was computed from. ``exclusive``: when
        another writer already made this very move from ``expected_current``, that is a
        conflict, not a no-op (two operators, not one task retried).
        """
        who = author or default_author()
        event_id = uuid.uuid4().hex
        for _ in contended(MAX_ATTEMPTS):
            state = self._read_state(name)
            current = state.aliases.get(alias)
            raced = expected_current is not UNSET and current != expected_current
            if raced and exclusive:
                raise self._conflict(name, alias, expected_current, current)
            to = target(state)
            if to == current:
                previous = next((e for e in reversed(self.history(name, alias)) if e.seq <= state.seq), None)
                if previous is not None:
                    return previous  # already there (e.g. a retried move): a no-op
                raise RegistryError(f"{name} has no alias {alias!r}")
            if raced:
                raise self._conflict(name, alias, expected_current, current)
            event = AliasEvent(
                seq=state.seq + 1,
                event_id=event_id,
                name=name,
                alias=alias,
                action=action,
                from_version=current,
                to_version=to,
                at=self._clock(),
                author=who,
                reason=reason,
                forced=forced or (expected_current is UNSET and action != "rollback"),
            )
            try:
                self.store.put_if_absent(self._event_key(name, event.seq), record_json(event))  # the commit point
            except PreconditionFailedError:
                logged = self._read_event(name, event.seq)
                if logged is None or logged.event_id != event_id:
                    continue  # another move took this sequence number: re-read and re-check
            self._materialise(name, event.seq)
            log.info("%s of %s: %s -> %s (%s)", alias, name, show_version(current), show_version(to), reason)
            return event
        raise ConflictError(f"{alias} of {name}: too many concurrent moves; re-read and retry")

    @staticmethod
    def _conflict(name: str, alias: str, expected: int | None | _Unset, current: int | None) -> ConflictError:
        return ConflictError(
            f"{alias} of {name} moved from {show_version(expected if isinstance(expected, int) else None)} to "
            f"{show_version(current)} by another writer; re-read and retry"
        )

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        expected_current: int | None | _Unset = UNSET,
        reason: str = "",
        author: str | None = None,
        forced: bool = False,
        exclusive: bool = False,
    ) -> AliasEvent:
        """Point ``alias`` at a committed ``version`` by compare-and-swap.

        ``expected_current`` is where the caller believes the alias points (``None``: not
        set); if it points elsewhere the move raises :class:`ConflictError`. Left out, the
        alias moves wherever it points and the event is marked ``forced``. Moving an alias to
        where it already points (a retried task, or a twin writer that won) writes nothing
        and returns the event that put it there; with ``exclusive`` (an operator's command,
        which no one retries) a twin writer that won is a conflict like any other move.
        """
        check_alias(alias)
        self.get_version(name, version)  # committed, or RegistryError
        v = int(version)
        return self._move(name, alias, "set", lambda s: v, expected_current, reason, author, forced, exclusive)

    def promote(
        self,
        name: str,
        version: int,
        expected_current: int | None | _Unset = UNSET,
        reason: str = "",
        author: str | None = None,
        forced: bool = False,
        exclusive: bool = False,
    ) -> AliasEvent:
        """``set_alias(name, "champion", ...)``; ``forced`` records a promotion the gate did not approve."""
        return self.set_alias(name, CHAMPION, version, expected_current, reason, author, forced, exclusive)

    def remove_alias(
        self,
        name: str,
        alias: str,
        expected_current: int | None | _Unset = UNSET,
        reason: str = "",
        author: str | None = None,
    ) -> AliasEvent:
        """Unset ``alias`` (compare-and-swap as in :meth:`set_alias`)."""
        check_alias(alias)
        return self._move(name, alias, "remove", lambda s: None, expected_current, reason, author)

    def rollback(
        self,
        name: str,
        reason: str,
        author: str | None = None,
        alias: str = CHAMPION,
        expected_current: int | None | _Unset = UNSET,
    ) -> AliasEvent:
        """Move ``alias`` back to the version it pointed at before its current one.

        Rollbacks stack: after 1 -> 2 -> 3, two rollbacks give 2 and then 1; a third fails.
        So two operators undoing the same promotion must say which one they undo:
        ``expected_current`` (the version they saw) is compared inside the compare-and-swap,
        and of two such rollbacks exactly one moves the alias; the other gets a
        :class:`ConflictError`. Left out, the rollback undoes whatever is current.
        """
        check_alias(alias)

        def target(state: _AliasState) -> int | None:
            lineage = _lineage(e for e in self.history(name, alias) if e.seq <= state.seq)
            if len(lineage) < 2 or lineage[-2] is None:
                raise RegistryError(f"{alias} of {name} has no previous version to roll back to")
            return lineage[-2]

        return self._move(name, alias, "rollback", target, expected_current, reason, author, exclusive=True)


def _lineage(events: Iterable[AliasEvent]) -> list[int | None]:
    """The stack of versions an alias held: moves push, rollbacks pop."""
    stack: list[int | None] = []
    for e in events:
        if e.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != e.to_version:
                stack.append(e.to_version)
        elif not stack or stack[-1] != e.to_version:
            stack.append(e.to_version)
    return stack
