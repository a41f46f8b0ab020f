"""skops behind one module: importing it without torch, and loading only what refit makes.

Loading: :func:`load_skops` admits a ``model.skops`` only if every type it names is one of
:data:`SKOPS_ALLOWED_TYPES` (skops' own default trust admits far more), checked before anything is
built, and, given the family and task, only if the estimator is exactly what that family makes.

Importing cheaply: ``import skops.io`` builds skops' default trusted-type list with scikit-learn's
``all_estimators()``, which walks and imports every scikit-learn subpackage (SVMs, clustering,
neighbours, ... and the array-API shim ``sklearn.externals.array_api_compat.torch``, which imports
torch when it is installed): 169 more scikit-learn modules, 0.7-1.4 s per process on an idle
2-core machine against 0.3-0.7 s without the walk (torch hidden in both), paid by every process
that loads or saves a scikit-learn model (each drift check, smoke test and serving process).
The same import also names every numpy and scipy.special ufunc for that list
(``skops.io._utils.get_public_type_names``): a ufunc without ``__module__`` is looked up in every
loaded module in turn, about 460,000 ``getattr`` calls where Prefect is already imported (a drift
check, a flow run by a worker), many of them on modules whose ``__getattr__`` raises: the import
took 2.5 s, and 0.35 s without the scan, in one process with Prefect, the flows and scikit-learn
already imported (2026-12-01, 2-core machine). refit never uses that list either: :func:`load_skops` admits only
:data:`SKOPS_ALLOWED_TYPES` (no ufunc) and passes skops exactly the types it found, already
checked. So while skops is first imported, ``all_estimators`` and skops' ufunc naming answer
empty lists (skops' default trust loses those entries: stricter, never looser, whatever the
skops version; a skops without the helper is imported as it is) and torch is hidden from the
import system as a second guard. All are restored at once; ``tests/unit/test_model_trust.py``
loads every family through this path, and ``tests/unit/test_model_import_cost.py`` checks what
a model load imports and that the scan is skipped.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import io
import json
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, cast

import numpy as np

from refit.errors import ModelArtifactError, first_line

_import_lock = threading.Lock()

#: Every type (``module.name``) a ``model.skops`` may reference: exactly what the families in
#: :mod:`refit.training.sklearn_models` produce once fitted (derived by dumping each family for
#: each task, with and without categorical columns; ``tests/unit/test_model_trust.py`` does
#: that again, so the list cannot go stale). Nothing is admitted by package: numpy, scipy and
#: sklearn hold classes whose ``__init__``/``__del__`` touch files (``numpy.lib.npyio.DataSource``
#: deletes a folder when collected).
SKOPS_ALLOWED_TYPES = frozenset(
    {
        # containers and plain values (skops' own nodes)
        "builtins.dict",
        "builtins.list",
        "builtins.slice",
        "builtins.str",
        "builtins.tuple",
        # numpy arrays, their scalar types and the generator HistGradientBoosting keeps
        "numpy.ndarray",
        *(f"numpy.{t.__name__}" for t in (np.bool_, np.int8, np.int16, np.int32, np.int64)),
        *(f"numpy.{t.__name__}" for t in (np.uint8, np.uint16, np.uint32, np.uint64)),
        *(f"numpy.{t.__name__}" for t in (np.float16, np.float32, np.float64)),
        "numpy.random._generator.Generator",
        # hist_gradient_boosting: the estimators and their fitted parts
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn.preprocessing._label.LabelEncoder",
        # ... its native-categorical preprocessor, and the two functions that references
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
        "functools.partial",
        "sklearn.utils.validation.check_array",
        # linear: a Pipeline of (one-hot ColumnTransformer,) LogisticRegression or Ridge
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._ridge.Ridge",
    }
)
#: The skops node kinds those types are stored as; any other kind (methods, operator
#: functions, sets, bytes, reduce-constructed objects, sparse matrices) is refused.
_SKOPS_NODES = frozenset(
    {
        "DictNode",
        "FunctionNode",
        "JsonNode",
        "ListNode",
        "LossNode",
        "NdArrayNode",
        "ObjectNode",
        "PartialNode",
        "RandomGeneratorNode",
        "SliceNode",
        "TupleNode",
        "TypeNode",
    }
)


class _HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while skops is imported)", name=fullname)
        return None


def _no_estimators(*_args: Any, **_kwargs: Any) -> list[tuple[str, type]]:
    return []


def _no_type_names(*_args: Any, **_kwargs: Any) -> list[str]:
    return []


#: skops' helper that names a module's ufuncs for its default trust list (see the docstring).
_UFUNC_NAMING = ("skops.io._utils", "get_public_type_names")


class _Executed(importlib.abc.Loader):
    """Wraps a module's loader: runs it, then hands the module to ``after``."""

    def __init__(self, loader: importlib.abc.Loader, after: Callable[[ModuleType], None]) -> None:
        self._loader, self._after = loader, after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, ...: tracebacks and linecache
        if "_loader" not in self.__dict__:  # a copy being built: no loader to ask yet
            raise AttributeError(name)
        return getattr(self.__dict__["_loader"], name)


class _SkipUfuncNaming(importlib.abc.MetaPathFinder):
    """Replaces skops' ufunc naming with :func:`_no_type_names` right after ``skops.io._utils``
    runs, before ``skops.io._trusted_types`` imports it; :meth:`restore` puts it back."""

    def __init__(self) -> None:
        self.patched: ModuleType | None = None
        self._original: Any = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _UFUNC_NAMING[0]:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Executed(spec.loader, self._patch)
        return spec

    def _patch(self, module: ModuleType) -> None:
        if hasattr(module, _UFUNC_NAMING[1]):
            self.patched, self._original = module, getattr(module, _UFUNC_NAMING[1])
            setattr(module, _UFUNC_NAMING[1], _no_type_names)

    def restore(self) -> None:
        if self.patched is not None:
            setattr(self.patched, _UFUNC_NAMING[1], self._original)


def skops_io() -> ModuleType:
    """``skops.io``, imported without walking scikit-learn's subpackages or importing torch
    (see this module's docstring)."""
    if "skops.io" in sys.modules:
        import skops.io

        return cast(ModuleType, skops.io)
    import sklearn.utils

    with _import_lock:
        if "skops.io" in sys.modules:
            import skops.io

            return cast(ModuleType, skops.io)
        walk = sklearn.utils.all_estimators
        hide = _HideTorch() if "torch" not in sys.modules else None
        skip = _SkipUfuncNaming() if _UFUNC_NAMING[0] not in sys.modules else None
        finders = [f for f in (hide, skip) if f is not None]
        sklearn.utils.all_estimators = _no_estimators
        sys.meta_path[:0] = finders
        try:
            import skops.io
        finally:
            sklearn.utils.all_estimators = walk
            for finder in finders:
                sys.meta_path.remove(finder)
            if skip is not None:
                skip.restore()
    return cast(ModuleType, skops.io)


def _skops_types(data: bytes) -> tuple[set[str], set[str]]:
    """Every ``module.name`` and every node kind named anywhere in a skops file's schema."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelArtifactError(f"model.skops is not a readable skops file: {first_line(exc)}") from None
    types: set[str] = set()
    nodes: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node or "__module__" in node or "__class__" in node:
                loader = node.get("__loader__")
                nodes.add(str(loader))
                if loader != "JsonNode":  # a JSON literal: json.loads, whatever its label
                    types.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return types, nodes


def _expected_estimator(family: str, task: str) -> str:
    """What :func:`refit.training.sklearn_models._build` makes for ``family`` and ``task``."""
    regression = task == "regression"
    if family == "hist_gradient_boosting":
        return "HistGradientBoostingRegressor" if regression else "HistGradientBoostingClassifier"
    if family == "linear":
        return f"Pipeline ending in {'Ridge' if regression else 'LogisticRegression'}"
    raise ModelArtifactError(f"model.json names family {family!r}, which is not a scikit-learn family")


def _check_estimator(estimator: Any, family: str, task: str) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline

    regression = task == "regression"
    expected = _expected_estimator(family, task)
    if family == "hist_gradient_boosting":
        ok = type(estimator) is (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)
    else:
        steps = getattr(estimator, "steps", None) if type(estimator) is Pipeline else None
        ok = (
            isinstance(steps, list)
            and len(steps) in (1, 2)
            and all(isinstance(step, tuple) and len(step) == 2 for step in steps)
            and type(steps[-1][1]) is (Ridge if regression else LogisticRegression)
            and (len(steps) == 1 or type(steps[0][1]) is ColumnTransformer)
        )
    if not ok:
        raise ModelArtifactError(
            f"model.skops holds a {type(estimator).__name__}, not the {expected} that model.json's "
            f"family {family!r} ({task}) makes"
        )


def load_skops(data: bytes, family: str | None = None, task: str | None = None) -> Any:
    """Load a skops estimator that references only :data:`SKOPS_ALLOWED_TYPES`.

    Every type in the file is checked before anything is built (skops' own default trust
    admits many more classes than refit makes). With ``family`` and ``task`` the loaded
    estimator must also be exactly what that family builds.
    """
    sio = skops_io()

    types, nodes = _skops_types(data)
    if family is not None and task is not None:
        _expected_estimator(family, task)  # an unknown family is refused before loading
    odd_nodes = sorted(nodes - _SKOPS_NODES)
    if odd_nodes:
        raise ModelArtifactError(f"model.skops holds objects refit does not load: {', '.join(odd_nodes)}")
    _refuse(types - SKOPS_ALLOWED_TYPES)  # before skops builds even its audit tree
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as exc:
        raise ModelArtifactError(f"model.skops is not a readable skops file: {first_line(exc)}") from None
    _refuse(untrusted - SKOPS_ALLOWED_TYPES)  # what skops' audit sees beyond the schema's labels
    try:
        estimator = sio.loads(data, trusted=sorted(untrusted))
    except Exception as exc:
        raise ModelArtifactError(f"model.skops could not be loaded: {first_line(exc)}") from None
    if family is not None and task is not None:
        _check_estimator(estimator, family, task)
    return estimator


def _refuse(types: set[str]) -> None:
    if types:
        raise ModelArtifactError(f"model.skops references types refit does not trust: {', '.join(sorted(types))}")
