"""A model registry on the store: numbered immutable versions, movable aliases, an audit log.

This package is the only writer of the ``registry/`` keys. It needs nothing but a
:class:`~refit.io.base.Store` with conditional writes (``put_if_absent``,
``put_if_unchanged``), so the same code runs on a local folder and on S3 with no lock server.

Layout, under ``registry/<model>/``::

    versions/<n>/.claim                      who claimed number n, and when (put_if_absent)
    versions/<n>/artifact/<file>             model files, when the registry keeps them
    versions/<n>/reference/sample.parquet    drift reference: a sample of the training rows
    versions/<n>/version.json                the metadata; written LAST (put_if_absent)
    history/<000000000001>.json              one alias move per object (put_if_absent)
    aliases.json                             {"seq": k, "aliases": {alias: version}}

Versions. A number is taken by ``put_if_absent`` of its ``.claim`` key (start after the
highest slot listed, step on while the claim exists), so two writers never share a number
and a stale listing cannot overwrite anything. The payload goes next, and ``version.json``
last, itself by ``put_if_absent``: it is the commit point. A slot without ``version.json``
is invisible (``list_versions``, ``resolve`` and aliases ignore it) and its number is never
reused. A registration that fails with an ordinary exception abandons its slot at once;
one that dies (a killed process) leaves it for :meth:`Registry.collect_garbage`, which
fences an old claim with a tombstone ``version.json`` (so a writer that was only slow cannot
commit into a slot being emptied) and then deletes its payload. Nothing deletes or rewrites
a committed version.

Aliases and history: the log is the truth, ``aliases.json`` is its materialised view.
Moving an alias reads the state (``aliases.json`` at sequence k, plus any logged event
k+1, k+2, ... not yet folded into it), checks the caller's ``expected_current`` against it,
checks that the target version is committed, and then writes event k+1 with
``put_if_absent``. That single conditional write is the commit point of the move: of two
writers that read the same state exactly one can create event k+1; the other re-reads, sees
the alias moved and gets :class:`~refit.errors.ConflictError` (or, if only another alias
moved, tries again at k+2). Afterwards ``aliases.json`` is advanced by compare-and-swap (or
``put_if_absent`` the first time). Crash windows:

* before the event: nothing happened; the alias still points at the old version;
* after the event, before ``aliases.json``: the move happened. Every reader replays the
  pending event, so ``aliases()``, ``resolve`` and ``history`` already agree, and the next
  writer folds it into ``aliases.json``.

So the alias never points at an uncommitted or missing version, the audit trail never
misses a move nor shows one that did not happen, and ``rollback`` can trust it.

Retries (a Prefect task run again after a crash) are safe: moving an alias to where it
already points writes nothing and returns the event that put it there, and
``register(..., run_id=...)`` returns the version that run already committed. The
sequence number inside ``aliases.json`` also means its content never repeats, so the local
store's content-hash version tokens have no ABA problem. An operator's move is not retried
but raced: ``exclusive=True`` (promote) and ``rollback(expected_current=...)`` make a twin
operator who already made the same move from the same champion a conflict, so of two
operators who saw one champion exactly one moves it, by one step.

Integrity: ``version.json`` records the sha256 of the artifact's ``manifest.json``
(``manifest_sha256``), and :meth:`Registry.load_model` and :meth:`Registry.read_artifact`
check it, so files edited after registration (manifest recomputed or not) do not load as
that version. Versions registered before the field existed load with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from refit.errors import NotFoundError, PreconditionFailedError, RegistryError
from refit.fingerprint import DatasetFingerprint
from refit.io.base import Store, validate_key
from refit.io.frames import frame_bytes, parse_frame
from refit.io.layout import LAYOUT
from refit.registry.aliases import CHAMPION, MAX_ATTEMPTS, UNSET, AliasMoves
from refit.registry.records import (
    MODEL_REF,
    AliasEvent,
    DatasetRecord,
    MetricDelta,
    ModelVersion,
    VersionDiff,
    check_alias,
    check_model_name,
    dataset_record,
    default_author,
    is_model_ref,
    metric_deltas,
    record_json,
)

if TYPE_CHECKING:
    from refit.model import LoadedModel

log = logging.getLogger("refit.registry")

ROOT = LAYOUT.registry
SAMPLE_FILE = "reference/sample.parquet"

_REF = MODEL_REF
_SEQ_DIGITS = 12
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The artifact file whose sha256 a version records (refit.model.MANIFEST).
MANIFEST_FILE = "manifest.json"


def _manifest_sha256(name: str, files: Mapping[str, bytes], given: str | None) -> str | None:
    """The sha256 a version records for its manifest: of the ``manifest.json`` given, else ``given``."""
    if MANIFEST_FILE in files:
        recorded = hashlib.sha256(files[MANIFEST_FILE]).hexdigest()
        if given is not None and given != recorded:
            raise RegistryError(f"register {name}: manifest_sha256 does not match the {MANIFEST_FILE} given")
        given = recorded
    if given is not None and not _SHA256.fullmatch(given):
        raise RegistryError(f"register {name}: manifest_sha256 must be 64 lowercase hex digits")
    return given


# --- the registry --------------------------------------------------------------------------


#: Why a version registered for promotion may never have been promoted (``models show`` and ``models gc`` say it).
NEVER_PROMOTED_WHY = (
    "its run died before promoting, or another run promoted first and this one did not win when judged against it"
)


class Registry(AliasMoves):
    """The model registry on ``store`` (see the module docstring for layout and guarantees).

    Args:
        store: where the registry lives; construction does no I/O.
        root: the top-level key prefix.
        clock: returns the current UTC time (injected by tests).
    """

    def __init__(self, store: Store, root: str = ROOT, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.root = validate_key(root)
        self._clock = clock or (lambda: datetime.now(UTC))

    # keys

    def _model_prefix(self, name: str) -> str:
        return LAYOUT.registry_model(check_model_name(name), self.root)

    def _slot(self, name: str, version: int) -> str:
        return f"{self._model_prefix(name)}versions/{int(version)}/"

    def _event_key(self, name: str, seq: int) -> str:
        return f"{self._model_prefix(name)}history/{seq:0{_SEQ_DIGITS}d}.json"

    def _aliases_key(self, name: str) -> str:
        return f"{self._model_prefix(name)}aliases.json"

    def version_key(self, name: str, version: int, file: str = "version.json") -> str:
        """The key of ``file`` under a version, e.g. ``artifact/model.skops``."""
        return validate_key(self._slot(name, version) + file)

    # --- versions ------------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        artifact_files: Mapping[str, bytes] | None = None,
        artifact_uri: str | None = None,
        datasets: Mapping[str, DatasetRecord | DatasetFingerprint | Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float | None] | None = None,
        segment_metrics: Mapping[str, Mapping[str, float | None]] | None = None,
        decision: Mapping[str, Any] | str | None = None,
        dossier_uris: Sequence[str] = (),
        compared_with: int | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        reference_sample: pd.DataFrame | None = None,
        author: str | None = None,
        git_commit: str | None = None,
        run_id: str | None = None,
        manifest_sha256: str | None = None,
    ) -> ModelVersion:
        """Register a new version and return its metadata; numbers are 1, 2, 3, ...

        The model is either copied in (``artifact_files``: file name -> bytes, kept under
        ``versions/<n>/artifact/``) or referenced (``artifact_uri``); give exactly one.
        The sha256 of the artifact's ``manifest.json`` is recorded (computed from
        ``artifact_files``, or given as ``manifest_sha256`` for a referenced artifact), and
        :meth:`load_model` refuses an artifact whose manifest no longer matches it.
        ``reference_sample`` (a sample the caller drew from the training rows) is kept as the
        version's drift reference. With ``run_id``, registering again (a retried task)
        returns the version that run already committed instead of a duplicate.
        """
        if (artifact_files is None) == (artifact_uri is None):
            raise RegistryError(f"register {name}: give exactly one of artifact_files and artifact_uri")
        check_model_name(name)
        files = dict(artifact_files or {})
        if artifact_files is not None and not files:
            raise RegistryError(f"register {name}: artifact_files is empty")
        for file in files:
            validate_key(f"{self._slot(name, 0)}artifact/{file}")
        manifest_sha256 = _manifest_sha256(name, files, manifest_sha256)
        if run_id is not None:
            for existing in self.list_versions(name):
                if existing.run_id == run_id:
                    return existing
        # Build (and so validate) the metadata before claiming anything: bad input leaves no slot.
        draft = ModelVersion(
            name=name,
            version=0,
            created_at=self._clock(),
            author=author or default_author(),
            git_commit=git_commit,
            run_id=run_id,
            artifact_uri=artifact_uri or "",
            artifact_files=sorted(files),
            datasets={k: dataset_record(v) for k, v in (datasets or {}).items()},
            params=dict(params or {}),
            metrics=dict(metrics or {}),
            segment_metrics={k: dict(v) for k, v in (segment_metrics or {}).items()},
            decision=dict(decision) if isinstance(decision, Mapping) else decision,
            dossier_uris=list(dossier_uris),
            compared_with=compared_with,
            tags=dict(tags or {}),
            description=description,
            reference_uri=None,
            manifest_sha256=manifest_sha256,
        )
        try:
            record_json(draft)
        except Exception as exc:  # e.g. numpy integers in params
            raise RegistryError(f"register {name}: metadata is not JSON-serialisable: {exc}") from None
        sample = None if reference_sample is None else frame_bytes(reference_sample, SAMPLE_FILE)
        return self._commit(draft, files, sample)

    def _commit(self, draft: ModelVersion, files: dict[str, bytes], sample: bytes | None) -> ModelVersion:
        """Claim the next number for ``draft``, write its payload, then its ``version.json`` (the commit point).

        A failure abandons the slot at once, so its number is never reused nor left half-written.
        """
        name = draft.name
        n = self._claim(name, draft.author)
        slot = self._slot(name, n)
        try:
            for file, data in files.items():
                self.store.put_if_absent(f"{slot}artifact/{file}", data)
            update: dict[str, Any] = {"version": n}
            if files:
                update["artifact_uri"] = self.store.uri_for(f"{slot}artifact")
            if sample is not None:
                self.store.put_if_absent(slot + SAMPLE_FILE, sample)
                update["reference_uri"] = self.store.uri_for(slot + SAMPLE_FILE)
            version = draft.model_copy(update=update)
            try:
                self.store.put_if_absent(slot + "version.json", record_json(version))  # the commit point
            except PreconditionFailedError:
                raise RegistryError(
                    f"version {n} of {name} was abandoned (garbage-collected) while this registration "
                    "was writing it; register again"
                ) from None
        except Exception:
            self._abandon(name, n)
            raise
        log.info("registered %s version %d", name, n)
        return version

    def _claim(self, name: str, author: str) -> int:
        prefix = f"{self._model_prefix(name)}versions/"
        taken = [int(p) for p in (k[len(prefix) :].split("/", 1)[0] for k in self.store.list(prefix)) if p.isdigit()]
        n = max(taken, default=0) + 1
        claim = json.dumps(
            {
                "claimed_at": self._clock().isoformat(),
                "author": author,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "nonce": uuid.uuid4().hex,  # two claims are never the same bytes
            }
        ).encode()
        for _ in range(MAX_ATTEMPTS):
            try:
                self.store.put_if_absent(f"{prefix}{n}/.claim", claim)
                return n
            except PreconditionFailedError:
                n += 1  # another writer holds n (or held it and crashed): the next one
        raise RegistryError(f"register {name}: could not claim a version number after {MAX_ATTEMPTS} tries")

    def _abandon(self, name: str, n: int) -> bool:
        """Fence slot ``n`` with a tombstone and delete its payload; False if it is committed."""
        slot = self._slot(name, n)
        tomb = json.dumps({"abandoned": True, "version": n, "abandoned_at": self._clock().isoformat()}).encode()
        try:
            try:
                self.store.put_if_absent(slot + "version.json", tomb)
            except PreconditionFailedError:
                if self._read_version_doc(name, n) is not None:
                    return False  # committed: never touched
            for key in self.store.list(slot):
                if key not in (slot + ".claim", slot + "version.json"):
                    self.store.delete(key)
        except Exception as exc:  # cleaning up is best effort: the slot is invisible anyway
            log.warning("could not clean up version slot %s: %s", slot, exc)
        return True

    def collect_garbage(self, name: str, older_than: timedelta = timedelta(hours=1)) -> list[int]:
        """Abandon version slots claimed more than ``older_than`` ago and never committed.

        Their numbers stay taken. Returns the numbers cleaned.
        """
        prefix = f"{self._model_prefix(name)}versions/"
        slots: dict[int, set[str]] = {}
        for key in self.store.list(prefix):
            part, _, rest = key[len(prefix) :].partition("/")
            if part.isdigit():
                slots.setdefault(int(part), set()).add(rest)
        cleaned = []
        now = self._clock()
        for n, files in sorted(slots.items()):
            if "version.json" in files:
                if files - {".claim", "version.json"} and self._read_version_doc(name, n) is None:
                    self._abandon(name, n)  # a tombstone whose clean-up was interrupted
                    cleaned.append(n)
                continue
            try:
                claimed_at = datetime.fromisoformat(
                    json.loads(self.store.get_bytes(f"{prefix}{n}/.claim"))["claimed_at"]
                )
            except (NotFoundError, ValueError, KeyError, TypeError):
                claimed_at = None  # no readable claim: payload without an owner
            if (claimed_at is None or now - claimed_at >= older_than) and self._abandon(name, n):
                cleaned.append(n)
        return cleaned

    def _read_version_doc(self, name: str, version: int) -> ModelVersion | None:
        """The committed metadata of ``version``, or None (no slot, uncommitted or abandoned)."""
        try:
            data = self.store.get_bytes(self._slot(name, version) + "version.json")
        except NotFoundError:
            return None
        doc = json.loads(data)
        return None if doc.get("abandoned") else ModelVersion.model_validate(doc)

    def _version_numbers(self, name: str) -> list[int]:
        """Numbers with a ``version.json`` (committed, or tombstones), ascending."""
        prefix = f"{self._model_prefix(name)}versions/"
        out = []
        for key in self.store.list(prefix):
            part, _, rest = key[len(prefix) :].partition("/")
            if rest == "version.json" and part.isdigit():
                out.append(int(part))
        return sorted(out)

    def list_models(self) -> list[str]:
        """Names of the models with at least one committed version, sorted."""
        names = set()
        for key in self.store.list(f"{self.root}/"):
            parts = key[len(self.root) + 1 :].split("/")
            if len(parts) == 4 and parts[1] == "versions" and parts[3] == "version.json" and parts[2].isdigit():
                names.add(parts[0])
        return sorted(n for n in names if self.list_versions(n))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """The committed versions of ``name``, oldest first (empty for an unknown model)."""
        docs = (self._read_version_doc(name, n) for n in self._version_numbers(name))
        return [d for d in docs if d is not None]

    def get_version(self, name: str, version: int) -> ModelVersion:
        """The metadata of one committed version."""
        found = self._read_version_doc(name, version)
        if found is None:
            self._raise_unknown_version(name, version)
        assert found is not None
        return found

    def _raise_unknown_version(self, name: str, version: int) -> None:
        versions = [v.version for v in self.list_versions(name)]
        if not versions:
            raise RegistryError(f"no model {name!r} in the registry at {self.store.uri_for(self.root)}")
        listed = ", ".join(map(str, versions))
        raise RegistryError(f"{name} has no version {version} (committed versions: {listed})")

    def read_artifact(self, name: str, version: int, file: str) -> bytes:
        """A model file the registry keeps for ``version``.

        When the version recorded its manifest's sha256, the file is checked against the
        manifest, and the manifest against that record (:class:`RegistryError` on a mismatch).
        """
        mv = self.get_version(name, version)
        if file not in mv.artifact_files:
            where = f"files: {', '.join(mv.artifact_files)}" if mv.artifact_files else f"it is at {mv.artifact_uri}"
            raise RegistryError(f"{mv.ref} has no artifact file {file!r} in the registry ({where})")
        slot = f"{self._slot(name, version)}artifact/"
        data = self.store.get_bytes(slot + file)
        if mv.manifest_sha256 is None or MANIFEST_FILE not in mv.artifact_files:
            return data
        manifest = data if file == MANIFEST_FILE else self.store.get_bytes(slot + MANIFEST_FILE)
        if hashlib.sha256(manifest).hexdigest() != mv.manifest_sha256:
            raise RegistryError(f"{mv.ref}: {MANIFEST_FILE} does not match the sha256 recorded at registration")
        if file != MANIFEST_FILE:
            try:
                expected = json.loads(manifest)["files"][file]["sha256"]
            except (ValueError, KeyError, TypeError):
                expected = None
            if expected is not None and hashlib.sha256(data).hexdigest() != expected:
                raise RegistryError(f"{mv.ref}: {file} does not match its sha256 in the registered manifest")
        return data

    def load_model(
        self, name: str, version: int | ModelVersion, *, client: Any = None, device: str = "cpu"
    ) -> LoadedModel:
        """Load a registered version's model, its manifest pinned to the sha256 recorded at registration.

        From the copy inside the registry when it has one (so a store can be moved or
        copied), else from the artifact URI it references (``client``: for an ``s3://`` URI).
        A version registered before refit recorded manifest hashes still loads, with a
        warning and ``pinned=False`` on the result: its files are checked against their own
        manifest only, which an editor of the folder can recompute.
        """
        from refit.model import load

        mv = version if isinstance(version, ModelVersion) else self.get_version(name, version)
        if mv.artifact_files:
            key = self.version_key(mv.name, mv.version, "artifact")
            loaded = load(self.store, key, device=device, manifest_sha256=mv.manifest_sha256)
        else:
            loaded = load(mv.artifact_uri, client=client, device=device, manifest_sha256=mv.manifest_sha256)
        if mv.manifest_sha256 is None:
            log.warning(
                "%s was registered without a manifest sha256: its files are checked against their own "
                "manifest only, not against the registry (re-register it to pin it)",
                mv.ref,
            )
        return loaded

    def reference(self, name: str, version: int) -> pd.DataFrame:
        """The drift reference of a version: its sample of the training rows."""
        mv = self.get_version(name, version)
        if mv.reference_uri is None:
            raise RegistryError(f"{mv.ref} was registered without a reference sample")
        slot = self._slot(name, version)
        return parse_frame(self.store.get_bytes(slot + SAMPLE_FILE), self.store.uri_for(slot + SAMPLE_FILE))

    # --- aliases -------------------------------------------------------------------------

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias move of ``name`` (or of one alias), oldest first."""
        prefix = f"{self._model_prefix(name)}history/"
        events = []
        for key in self.store.list(prefix):
            try:
                events.append(AliasEvent.model_validate_json(self.store.get_bytes(key)))
            except NotFoundError:
                continue
        return [e for e in sorted(events, key=lambda e: e.seq) if alias is None or e.alias == alias]

    # --- promotion bookkeeping -----------------------------------------------------------

    def never_promoted(self, name: str) -> list[int]:
        """Versions registered for promotion (their gate decision, or a forced run, said
        PROMOTE) that never held the champion alias: the run was killed between registering
        and promoting, or lost the promotion race. Nothing moves them on its own."""
        held = {e.to_version for e in self.history(name, CHAMPION)}
        return [mv.version for mv in self.list_versions(name) if _promote_bound(mv) and mv.version not in held]

    def promotion_note(self, mv: ModelVersion) -> str | None:
        """One line for ``models show`` when ``mv`` was meant to be promoted and never was."""
        if not _promote_bound(mv) or any(e.to_version == mv.version for e in self.history(mv.name, CHAMPION)):
            return None
        run = f" by run {mv.run_id}" if mv.run_id else ""
        return (
            f"registered{run} for promotion but never promoted ({NEVER_PROMOTED_WHY}): "
            f"promote it by hand (refit models promote {mv.name} {mv.version}) or leave it"
        )

    # --- reads ---------------------------------------------------------------------------

    def champion(self, name: str) -> ModelVersion:
        """The version the ``champion`` alias points at (:class:`RegistryError` when there is none)."""
        return self.resolve(f"{name}@{CHAMPION}")

    def resolve(self, ref: str) -> ModelVersion:
        """``NAME`` (its champion), ``NAME@ALIAS`` or ``NAME:VERSION`` -> the version's metadata."""
        m = _REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
        if m is None:
            raise RegistryError(f"invalid model reference {ref!r}: use NAME, NAME@ALIAS or NAME:VERSION")
        name = check_model_name(m["name"])
        if m["version"] is not None:
            if not m["version"].isdigit():
                raise RegistryError(f"invalid model reference {ref!r}: the version after ':' must be a number")
            return self.get_version(name, int(m["version"]))
        alias = check_alias(m["alias"] or CHAMPION)
        aliases = self.aliases(name)
        if alias not in aliases:
            if not self._version_numbers(name):
                raise RegistryError(f"no model {name!r} in the registry at {self.store.uri_for(self.root)}")
            known = ", ".join(f"{a} -> {v}" for a, v in aliases.items()) or "none"
            raise RegistryError(f"{name} has no alias {alias!r} (aliases: {known})")
        return self.get_version(name, aliases[alias])

    def diff(self, name: str, a: int | str, b: int | str) -> VersionDiff:
        """Metrics of versions ``a`` and ``b`` (numbers or aliases) side by side; deltas are b - a."""
        va, vb = (self._version_or_alias(name, x) for x in (a, b))
        segments = sorted(set(va.segment_metrics) | set(vb.segment_metrics))
        return VersionDiff(
            name=name,
            a=va.version,
            b=vb.version,
            overall=metric_deltas(va.metrics, vb.metrics),
            segments={s: metric_deltas(va.segment_metrics.get(s, {}), vb.segment_metrics.get(s, {})) for s in segments},
        )

    def _version_or_alias(self, name: str, ref: int | str) -> ModelVersion:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return self.get_version(name, int(ref))
        return self.resolve(f"{name}@{ref}")


def _promote_bound(mv: ModelVersion) -> bool:
    """Whether the run that registered ``mv`` meant to promote it (its decision said PROMOTE)."""
    outcome = mv.decision.get("outcome") if isinstance(mv.decision, Mapping) else None
    return str(outcome or mv.tags.get("outcome", "")).upper() == "PROMOTE"


__all__ = [
    "CHAMPION",
    "MANIFEST_FILE",
    "NEVER_PROMOTED_WHY",
    "ROOT",
    "SAMPLE_FILE",
    "UNSET",
    "AliasEvent",
    "DatasetRecord",
    "MetricDelta",
    "ModelVersion",
    "Registry",
    "VersionDiff",
    "default_author",
    "is_model_ref",
]
