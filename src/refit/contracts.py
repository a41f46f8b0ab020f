"""The data contracts a config names: importing a schema module, its columns, and the config
checked against them when it loads (one line naming the file and key, seconds after the
mistake instead of after a training run)."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any

from refit.errors import ConfigError

if TYPE_CHECKING:
    from refit.config import PipelineConfig


def import_schema(path: str) -> Any:
    """The pandera DataFrameModel class named by ``module:Class`` (``dataset.schema``,
    ``dataset.capture_schema``); anything else is a one-line ConfigError.

    Importing a module runs its top-level code, and only then can the object be checked: a
    schema path is trusted like code. Standard-library modules are refused before they are
    imported (``this`` prints the Zen of Python, ``antigravity`` opens a browser, ``os:system``
    is no schema); any other module is imported, then its object must be a subclass of
    pandera's ``DataFrameModel`` (refit's own schemas derive from ``schemas.base.BaseSchema``).
    """
    import sys

    from pandera.pandas import DataFrameModel

    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"invalid import path {path!r}: expected 'module:Class'")
    if module_name.partition(".")[0] in sys.stdlib_module_names:
        raise ConfigError(
            f"{path!r} is not a schema: {module_name!r} is a standard-library module "
            "(expected a pandera DataFrameModel, e.g. 'schemas.churn:ChurnTrainingSchema')"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module's own code raised
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = (
            " (schema modules are imported from the config file's folder, the working directory and PYTHONPATH)"
            if isinstance(exc, ModuleNotFoundError)
            else ""
        )
        raise ConfigError(f"cannot import {module_name!r} (from {path!r}): {first}{where}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_name!r} has no {attr!r} (from {path!r})") from None
    if not (isinstance(obj, type) and issubclass(obj, DataFrameModel) and obj is not DataFrameModel):
        what = f"class {obj.__name__}" if isinstance(obj, type) else type(obj).__name__
        raise ConfigError(
            f"{path!r} is not a schema: it is a {what}, not a pandera DataFrameModel subclass "
            "(e.g. 'schemas.churn:ChurnTrainingSchema')"
        )
    return obj


def import_object(path: str) -> Any:
    """Import ``module:Class``: every import path in a refit config names a schema, so this is
    :func:`import_schema` (kept under its old name for its callers)."""
    return import_schema(path)


def schema_columns(schema_path: str) -> list[str]:
    """Column names of a pandera DataFrameModel given as ``module:Class``."""
    model = import_schema(schema_path)
    return list(model.to_schema().columns)


def column_kinds(schema_path: str) -> dict[str, tuple[str, bool]]:
    """Each declared column of a ``module:Class`` schema: its kind (:func:`_column_kind`) and
    whether it may be null, in the schema's order."""
    columns = import_schema(schema_path).to_schema().columns
    return {name: (_column_kind(col.dtype), bool(col.nullable)) for name, col in columns.items()}


def _column_kind(dtype: Any) -> str:
    """``bool``, ``int``, ``float``, ``datetime`` or ``text`` for a pandera column's declared dtype."""
    name = str(dtype).lower()
    for kind, marks in (
        ("bool", ("bool",)),
        ("datetime", ("datetime", "timestamp")),
        ("int", ("int",)),
        ("float", ("float", "double", "decimal")),
    ):
        if any(mark in name for mark in marks):
            return kind
    return "text"


#: Which declared target kinds each task can judge (binary also takes strings with a positive_class).
_TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "binary": ("int", "bool", "float"),
    "multiclass": ("int", "text"),
    "regression": ("int", "float"),
}


def check_against_schema(config: PipelineConfig, source: str = "<config>") -> None:
    """Refuse, in one line, a config whose columns the schemas do not declare.

    A target, id, timestamp, feature or segment column the schema lacks, a binned segment on a
    non-numeric column, or a target the task cannot judge (``Yes``/``No`` labels for ``binary``)
    would otherwise pass ``refit validate`` and fail a retrain only after every candidate
    trained. The capture schema must declare the request id and every feature; its target
    column is optional (requests are logged before their label exists).
    """
    ds = config.dataset
    schema = import_schema(ds.schema_path).to_schema()
    columns = dict(schema.columns)

    def missing(key: str, column: str, where: str = ds.schema_path, known: Any = columns) -> ConfigError:
        hint = difflib.get_close_matches(column, list(known), n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        return ConfigError(f"{source}: {key}: column '{column}' is not in schema {where}{suffix}")

    named = [
        ("dataset.target", ds.target),
        ("dataset.id_column", ds.id_column),
        ("dataset.timestamp_column", ds.timestamp_column),
    ]
    named += [(f"dataset.segments[{i}].column", spec.column) for i, spec in enumerate(ds.segments)]
    named += [
        (f"dataset.segment_crossings[{i}]", column)
        for i, crossing in enumerate(ds.segment_crossings)
        for column in crossing
    ]
    named += [(f"dataset.features[{i}]", column) for i, column in enumerate(ds.features or [])]
    for key, column in named:
        if column not in columns:
            raise missing(key, column)
    target_kind = _column_kind(columns[ds.target].dtype)
    if ds.task == "binary" and target_kind == "text" and ds.positive_class is None:
        raise ConfigError(
            f"{source}: dataset.positive_class: column '{ds.target}' holds string labels "
            f"({columns[ds.target].dtype} in {ds.schema_path}); name the label that counts as positive, "
            "e.g. positive_class: 'Yes'"
        )
    if ds.positive_class is not None and (ds.task != "binary" or target_kind != "text"):
        raise ConfigError(
            f"{source}: dataset.positive_class: only a binary task with string labels takes one "
            f"(task {ds.task}, '{ds.target}' declared {columns[ds.target].dtype}); remove it"
        )
    allowed = (*_TARGET_KINDS[ds.task], "text") if ds.positive_class is not None else _TARGET_KINDS[ds.task]
    if target_kind not in allowed:
        raise ConfigError(
            f"{source}: dataset.target: column '{ds.target}' is declared {columns[ds.target].dtype} in "
            f"{ds.schema_path}, and task {ds.task} needs {' or '.join(_TARGET_KINDS[ds.task])} labels "
            "(string labels: binary with dataset.positive_class, or multiclass)"
        )
    _check_classes(config, source, columns[ds.target], target_kind)
    if ds.positive_class is not None:
        _check_positive_class(config, source, columns[ds.target])
    for i, spec in enumerate(ds.segments):
        kind = _column_kind(columns[spec.column].dtype)
        if spec.bins is not None and kind not in ("int", "float"):
            raise ConfigError(
                f"{source}: dataset.segments[{i}].bins: column '{spec.column}' is declared "
                f"{columns[spec.column].dtype} in {ds.schema_path}; bins need a numeric column"
            )
    if ds.capture_schema is not None:
        captured = dict(import_schema(ds.capture_schema).to_schema().columns)
        needed = [("dataset.request_id_column", ds.request_id_column)]
        needed += [("dataset.features", column) for column in config.feature_columns]
        for key, column in needed:
            if column not in captured:
                raise missing(key, column, ds.capture_schema, captured)


def _check_classes(config: PipelineConfig, source: str, target: Any, target_kind: str) -> None:
    """``dataset.classes`` against the target's declaration: string multiclass labels need a
    declared order (a sorted one would move whenever a class is missing from a training window
    or a new one appears, and an unknown label would be learned as a class); declared classes
    are of the target's kind and, where the schema lists the allowed labels (``isin``), among them."""
    ds = config.dataset
    if ds.task != "multiclass":
        return
    declared = f"{target.dtype} in {ds.schema_path}"
    if ds.classes is None:
        if target_kind == "text":
            raise ConfigError(
                f"{source}: dataset.classes: column '{ds.target}' holds string labels ({declared}); "
                "declare the classes in order, e.g. classes: [low, mid, high]"
            )
        return
    wrong = [c for c in ds.classes if isinstance(c, str) != (target_kind == "text")]
    if wrong:
        raise ConfigError(
            f"{source}: dataset.classes: {wrong[0]!r} does not fit column '{ds.target}' ({declared}); "
            f"declare {'strings' if target_kind == 'text' else 'integers'}"
        )
    for allowed in _allowed_labels(target):
        outside = [c for c in ds.classes if str(c) not in {str(a) for a in allowed}]
        if outside:
            raise ConfigError(
                f"{source}: dataset.classes: {', '.join(map(str, outside))} not allowed by column "
                f"'{ds.target}' in {ds.schema_path} (isin {list(allowed)}); remove them or widen the schema"
            )


def _allowed_labels(target: Any) -> list[list[Any]]:
    """The label lists the target's ``isin`` checks allow (none when it declares no such check)."""
    lists = [
        (check.statistics or {}).get("allowed_values") if check.name == "isin" else None for check in target.checks
    ]
    return [list(a) for a in lists if a is not None]


def _check_positive_class(config: PipelineConfig, source: str, target: Any) -> None:
    """A ``positive_class`` the schema's ``isin`` on the target does not allow is no label any row
    can have: every run trained, then stopped at the split ("needs two labels")."""
    ds = config.dataset
    for allowed in _allowed_labels(target):
        if str(ds.positive_class) not in {str(a) for a in allowed}:
            raise ConfigError(
                f"{source}: dataset.positive_class: {ds.positive_class!r} is not a label column '{ds.target}' "
                f"allows in {ds.schema_path} (isin {allowed}); name one of them"
            )
