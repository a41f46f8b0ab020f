"""Importing skops without torch.

``import skops.io`` builds skops' default trusted-type list with scikit-learn's
``all_estimators()``, which walks and imports every scikit-learn subpackage, including the
array-API shim ``sklearn.externals.array_api_compat.torch`` that imports torch when it is
installed (about 2 s per process here). refit never uses that list (``refit.model`` passes its
own exact allow-list), so while skops is first imported, torch is hidden from the import
system: the shim fails to import, ``pkgutil.walk_packages`` skips it, and a process that loads
a scikit-learn model never pays for torch. Torch imports normally afterwards.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

_import_lock = threading.Lock()


class _HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while skops is imported)", name=fullname)
        return None


def skops_io() -> ModuleType:
    """``skops.io``, imported without importing torch when torch is not loaded yet."""
    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    with _import_lock:
        hide = _HideTorch()
        sys.meta_path.insert(0, hide)
        try:
            import skops.io
        finally:
            sys.meta_path.remove(hide)
    return skops.io
