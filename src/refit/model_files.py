"""The model artifact's JSON files as :func:`refit.model.load` reads them back: strict records
of the keys refit reads (extra keys tolerated: a newer refit may add some), and every fault,
invalid JSON or a wrong value, one :class:`refit.errors.ModelArtifactError` line naming the file
and the key.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from refit.errors import ModelArtifactError, first_line
from refit.records import TolerantRecord

_J = TypeVar("_J", bound="_ArtifactJson")


class _ArtifactJson(TolerantRecord):
    # Extra keys are tolerated (a newer refit may add some); the ones refit reads must be right.
    model_config = ConfigDict(strict=True)


_Label = StrictBool | StrictInt | StrictFloat | StrictStr


class ModelJson(_ArtifactJson):
    family: StrictStr
    task: Literal["binary", "multiclass", "regression"]
    weights: StrictStr
    classes: list[_Label] | None = None
    target: StrictStr | None = None
    target_mean: float | None = None
    target_std: float | None = None
    architecture: dict[str, Any] | None = None
    params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _classes_fit_the_task(self) -> ModelJson:
        if self.task != "regression" and (not self.classes or len(self.classes) < 2):
            raise ValueError(f"a {self.task} model needs at least two classes")
        if self.task == "binary" and self.classes and len(self.classes) != 2:
            raise ValueError(f"a binary model has two classes, not {len(self.classes)}")
        return self


class _Column(_ArtifactJson):
    name: StrictStr
    dtype: StrictStr


class InputSchemaJson(_ArtifactJson):
    columns: list[_Column]
    numeric: list[StrictStr]
    categorical: list[StrictStr]


class PreprocessingJson(_ArtifactJson):
    format_version: StrictInt
    numeric: list[StrictStr]
    categorical: list[StrictStr]
    medians: list[float]
    centers: list[float]
    scales: list[float]
    missing_indicators: list[StrictStr]
    vocab: dict[str, list[StrictStr]]
    clip: float

    @model_validator(mode="after")
    def _consistent(self) -> PreprocessingJson:
        n = len(self.numeric)
        if not len(self.medians) == len(self.centers) == len(self.scales) == n:
            raise ValueError(f"medians, centers and scales must each have {n} values (one per numeric column)")
        values = [*self.medians, *self.centers, *self.scales, self.clip]
        if not all(math.isfinite(v) for v in values) or any(v == 0 for v in self.scales):
            raise ValueError("medians, centers, scales and clip must be finite numbers, scales non-zero")
        if not set(self.missing_indicators) <= set(self.numeric):
            raise ValueError("missing_indicators must be numeric columns")
        if set(self.vocab) != set(self.categorical):
            raise ValueError("vocab must have exactly one entry per categorical column")
        return self


def parse_json(name: str, data: bytes, model: type[_J] | None = None) -> Any:
    """A JSON file of the artifact, checked against ``model``; any fault is one ModelArtifactError line."""
    try:
        value = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ModelArtifactError(f"{name} is not valid JSON: {first_line(exc)}") from None
    if model is None:
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "top level"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ModelArtifactError(f"{name} is malformed at {where}: {err['msg']}{more}") from None


def parse_object(name: str, data: bytes) -> dict[str, Any]:
    value = parse_json(name, data)
    if not isinstance(value, dict):
        raise ModelArtifactError(f"{name} is malformed: expected a JSON object, got {type(value).__name__}")
    return value
