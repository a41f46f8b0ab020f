"""Local-folder store: atomic writes by temp file + rename, CAS under a file lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from refit.errors import InvalidKeyError, NotFoundError, PreconditionFailedError, StoreError
from refit.io.base import Blob, Store, validate_key, validate_prefix

_LOCK_DIR = ".locks"
_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"


def _is_temp_name(name: str) -> bool:
    return name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX)


#: OS errors that may pass when the same call is simply retried (a network filesystem hiccup,
#: an interrupted call, a busy resource). Everything else (read-only or full disk, permissions,
#: symlink loops, names too long, a file where a folder should be) needs someone to act.
_TRANSIENT_ERRNOS = frozenset(
    {errno.EIO, errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE, errno.ENOLCK, errno.ECONNRESET}
)


def os_store_error(action: str, where: str, exc: OSError) -> StoreError:
    """One line for any OS error on a store path: the action, the path, the errno name and its text."""
    code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StoreError(f"cannot {action} {where}: {reason} ({code})", transient=exc.errno in _TRANSIENT_ERRNOS)


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class LocalStore(Store):
    """A store rooted at a local folder (created on first write, not at construction)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        validate_key(key)
        # Names the store uses for itself would be invisible to list() (or break locking).
        if key.split("/", 1)[0] == _LOCK_DIR:
            raise InvalidKeyError(f"invalid key {key!r}: '{_LOCK_DIR}' is reserved by the local store")
        if _is_temp_name(key.rsplit("/", 1)[-1]):
            raise InvalidKeyError(f"invalid key {key!r}: names like '.name.tmp' are reserved for in-flight writes")
        return self.root / key

    def _write_error(self, key: str, exc: OSError) -> StoreError:
        return os_store_error("write", self.uri_for(key), exc)

    def get(self, key: str) -> Blob:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"not found: {self.uri_for(key)}") from None
        except IsADirectoryError:
            raise NotFoundError(f"not found: {self.uri_for(key)} is a folder, not an object") from None
        except OSError as exc:
            raise os_store_error("read", self.uri_for(key), exc) from None
        return Blob(data=data, version=_version(data))

    def _write_temp(self, key: str, data: bytes) -> Path:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
        except OSError as exc:
            # FileExistsError / NotADirectoryError: a parent "folder" is an object.
            raise self._write_error(key, exc) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise self._write_error(key, exc) from None
            raise
        return Path(tmp)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock_path = self.root / _LOCK_DIR / (hashlib.sha256(key.encode()).hexdigest() + ".lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "a+b")  # noqa: SIM115 (closed below, after the lock is released)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError as exc:
            raise os_store_error("lock", self.uri_for(key), exc) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    @contextlib.contextmanager
    def _staged(self, key: str, data: bytes) -> Iterator[Path]:
        """``data`` in a temporary file beside ``key``'s path, for the caller to move into place.

        An OSError in the block is the store's write error; the temporary file is removed
        afterwards unless it was moved.
        """
        tmp = self._write_temp(key, data)
        try:
            yield tmp
        except OSError as exc:
            raise self._write_error(key, exc) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # only still there if the move failed (or it was linked)

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        with self._staged(key, data) as tmp, self._locked(key):
            os.replace(tmp, path)
        return _version(data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        path = self._path(key)
        with self._staged(key, data) as tmp:
            try:
                # link() fails if the target exists: an atomic create-if-absent on POSIX.
                os.link(tmp, path)
            except FileExistsError:
                raise PreconditionFailedError(f"precondition failed: {self.uri_for(key)} already exists") from None
        return _version(data)

    def put_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        path = self._path(key)
        with self._staged(key, data) as tmp, self._locked(key):
            try:
                current = _version(path.read_bytes())
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise PreconditionFailedError(f"precondition failed: {self.uri_for(key)} no longer exists") from None
            if current != version:
                raise PreconditionFailedError(f"precondition failed: {self.uri_for(key)} changed since it was read")
            os.replace(tmp, path)
        return _version(data)

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        if not self.root.exists():
            return []
        base_dir = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base_dir.is_dir():
            return []
        keys = []

        def walk_error(exc: OSError) -> None:
            if isinstance(exc, FileNotFoundError | NotADirectoryError):
                return  # removed while we walked: nothing to list there
            raise os_store_error("list", self.uri_for(prefix) if prefix else self.uri, exc)

        for dirpath, dirnames, filenames in os.walk(base_dir, onerror=walk_error):
            dirnames[:] = [d for d in dirnames if not (d == _LOCK_DIR and Path(dirpath) == self.root)]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if _is_temp_name(name):
                    continue  # an in-flight atomic write
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.split("/", 1)[0] == _LOCK_DIR:
                    continue  # lock files, e.g. for list(".locks/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def browse_url(self, uri: str) -> str:
        """``file://`` of the object's absolute path."""
        return Path(uri.removeprefix("file://")).resolve().as_uri()

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"not found: {self.uri_for(key)}") from None
        except OSError as exc:
            raise os_store_error("stat", self.uri_for(key), exc) from None

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return path.is_file()
        except OSError as exc:  # is_file() already answers False for missing parents
            raise os_store_error("check", self.uri_for(key), exc) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        if not os.path.lexists(path):
            return  # nothing to delete (and no lock folder created in an unused store)
        # Under the key's lock, so a delete cannot slip between put_if_unchanged's check and
        # its replace (which would resurrect the key after delete returned).
        with self._locked(key), contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise
            except OSError as exc:
                raise os_store_error("delete", self.uri_for(key), exc) from None

    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (for libraries that want a path)."""
        return self._path(key)
