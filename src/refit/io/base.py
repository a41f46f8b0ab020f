"""The store interface: a flat key space of bytes with conditional writes.

Two implementations sit behind it (a local folder and S3). Everything refit persists goes
through this interface, so the same code runs against a laptop folder, a test server or AWS.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from refit.errors import InvalidKeyError

_BAD_CHARS = re.compile(r"[\x00-\x1f\\]")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`InvalidKeyError`.

    Rules: not empty, not absolute, no ``..`` or ``.`` segments, no empty segments
    (``a//b`` or a trailing ``/``), no backslashes or control characters.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("invalid key '': a key must not be empty")
    if key.startswith("/"):
        raise InvalidKeyError(f"invalid key {key!r}: absolute paths are not allowed")
    if _BAD_CHARS.search(key):
        raise InvalidKeyError(f"invalid key {key!r}: backslashes and control characters are not allowed")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidKeyError(f"invalid key {key!r}: empty path segment")
        if segment in (".", ".."):
            raise InvalidKeyError(f"invalid key {key!r}: '{segment}' segments are not allowed")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, optionally ending with ``/``."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True)
class Blob:
    """Bytes read from the store and the version token they were read at."""

    data: bytes
    version: str


class Store(ABC):
    """A key -> bytes store with compare-and-swap.

    ``version`` tokens are opaque strings (an S3 ETag, a content hash locally); pass the one
    returned by :meth:`get` or a put to :meth:`put_if_unchanged`.
    """

    #: URI of the store root, e.g. ``/tmp/x`` or ``s3://bucket/prefix``.
    uri: str

    @abstractmethod
    def get(self, key: str) -> Blob:
        """Read a key. Raises NotFoundError."""

    def get_bytes(self, key: str) -> bytes:
        return self.get(key).data

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Write (or overwrite) a key atomically; return its new version."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create a key only if it does not exist. Raises PreconditionFailedError."""

    @abstractmethod
    def put_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        """Replace a key only if its version is still ``version``. Raises PreconditionFailedError."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix``, sorted."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key exists."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete a key; deleting a missing key is not an error."""

    def size(self, key: str) -> int:
        """Bytes stored under ``key`` (backends answer without reading it). Raises NotFoundError."""
        return len(self.get_bytes(key))

    def uri_for(self, key: str) -> str:
        """The URI of ``key`` (for links in reports and lineage)."""
        validate_key(key)
        return f"{self.uri.rstrip('/')}/{key}"

    def browse_url(self, uri: str) -> str:
        """A URL a person can open for ``uri`` (an object of this store), for links in the UI."""
        return uri

    def glob(self, pattern: str) -> builtins.list[str]:  # ``list`` is a method here
        """Keys matching a shell-style pattern.

        ``*``, ``?`` and ``[...]`` never match ``/``; ``**`` matches across folders, and
        ``**/`` also matches no folder at all (``a/**/b`` matches ``a/b``). A pattern without
        wildcards is an exact key.
        """
        validate_key(pattern)
        if not any(c in pattern for c in "*?["):
            return [pattern] if self.exists(pattern) else []
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        # list() by the folder of the literal part (or the literal itself at the top level)
        prefix = literal if "/" not in literal else literal.rsplit("/", 1)[0] + "/"
        regex = _glob_to_regex(pattern)
        return [k for k in self.list(prefix) if regex.fullmatch(k)]


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob to a regex where only ``**`` crosses ``/``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
                out.append("(?:[^/]*/)*")  # zero or more whole folders
                i += 3
            else:
                out.append(".*")
                i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal '['
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1 : j]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[^/{body}]" if negate else f"(?!/)[{body}]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)
