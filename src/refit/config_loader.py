"""Reading a pipeline config, and a run's parameters meeting it.

:func:`load_config` reads a YAML file through a bounded loader (an alias bomb is refused
before it expands), :func:`parse_config` checks a mapping against
:class:`refit.config.PipelineConfig` with one error line per key, naming the source file, and
:func:`resolve_run_parameters` fills a run's empty parameters from the loaded config. The
models and their defaults live in :mod:`refit.config`; nothing here touches the disk or the
network at import time.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from refit.config import DEFAULT_CONFIG_FILE, PipelineConfig
from refit.errors import ConfigError

_Params = TypeVar("_Params", bound=BaseModel)


#: Run parameters the YAML owns: a flow parameter, CLI option or deployment default left empty
#: (None) reads its value from here, through :func:`resolve_run_parameters` and nowhere else.
YAML_OWNED_PARAMETERS: dict[str, tuple[str, str]] = {
    "window_days": ("training", "window_days"),
    "window_hours": ("drift", "window_hours"),
    "window_rows": ("drift", "window_rows"),
}


#: Parameters that say one thing two ways: a caller who sets one takes none of the others from
#: the YAML (a row count replaces the hours of a drift window; it is never intersected with them).
EXCLUSIVE_PARAMETERS: tuple[tuple[str, ...], ...] = (("window_hours", "window_rows"),)


def resolve_run_parameters(params: _Params, config: PipelineConfig) -> _Params:
    """``params`` with each YAML-owned field that is None taken from ``config``.

    The one place a run's parameters meet the YAML, so that the CLI, a flow called directly
    and a deployment's run read the same value (a default written in each would disagree).
    """
    fields = type(params).model_fields
    chosen = {
        name
        for group in EXCLUSIVE_PARAMETERS
        if any(name in fields and getattr(params, name) is not None for name in group)
        for name in group
    }
    update = {
        name: getattr(getattr(config, section), field)
        for name, (section, field) in YAML_OWNED_PARAMETERS.items()
        if name in fields and getattr(params, name) is None and name not in chosen
    }
    return params.model_copy(update=update)


def _describe(err: Any, source: str) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc)
    if err["type"] == "extra_forbidden":
        model: type[BaseModel] | None = PipelineConfig
        for part in loc[:-1]:
            field = model.model_fields.get(part) if model is not None else None
            ann = getattr(field, "annotation", None)
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        known = []
        if model is not None:
            known = [f.alias or n for n, f in model.model_fields.items()]
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{source}: unknown key '{dotted}'{suffix}"
    if err["type"] == "missing":
        return f"{source}: missing required key '{dotted}'"
    return f"{source}: invalid value for '{dotted}': {err['msg']}"


def parse_config(raw: Any, source: str = "<config>") -> PipelineConfig:
    """Validate a config mapping; errors name the key and the source file."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        messages = [_describe(e, source) for e in exc.errors()]
        raise ConfigError("; ".join(messages)) from None


#: Most values a YAML config may hold, every use of an alias counted in full. A real config has
#: a few hundred; an alias bomb ("billion laughs": nine aliases of nine aliases ...) has 10**9,
#: which loads in milliseconds as shared lists and then burns minutes wherever it is walked.
MAX_YAML_NODES = 10_000


class _YamlTooLarge(Exception):
    """The document expands to more than MAX_YAML_NODES values, or an alias contains itself."""


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """PyYAML's SafeLoader, counting each node as if every alias were expanded in place."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its size expanded, once composed

    def _grow(self, count: int) -> None:
        self._expanded += count
        if self._expanded > MAX_YAML_NODES:
            raise _YamlTooLarge(f"expands to more than {MAX_YAML_NODES:,} values (aliases counted in full)")

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:  # still being composed: the alias is inside its anchor
                raise _YamlTooLarge("has an alias inside its own anchor (a recursive structure)")
            self._grow(self._sizes[id(node)])
            return node
        start = self._expanded
        self._grow(1)
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._expanded - start
        return node


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Load a YAML config (default ``./refit.yaml``)."""
    path = Path(path or DEFAULT_CONFIG_FILE)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    loader = _BoundedLoader(text)
    try:
        raw = loader.get_single_data()
    except _YamlTooLarge as exc:
        raise ConfigError(f"{path}: refusing this YAML: it {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. a date like 2026-13-45
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    finally:
        loader.dispose()
    _importable_from(path)
    config = parse_config(raw, str(path))
    from refit.contracts import check_against_schema

    check_against_schema(config, str(path))
    return config


def _importable_from(config_file: Path) -> None:
    """Schema modules are found beside the config file and in the working directory, as well as
    on ``PYTHONPATH``: a user's ``myschemas/bikes.py`` next to their YAML just works."""
    import sys

    for folder in (config_file.resolve().parent, Path.cwd()):
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
