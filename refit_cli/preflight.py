"""What a flow-backed command checks before it starts Prefect: the config, the store, the inputs.

A typo must cost a second and one line, not a Prefect start, a traceback and a Failed flow run.
Nothing here imports Prefect.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from refit.errors import ConfigError

if TYPE_CHECKING:
    from refit.config import PipelineConfig


def existing_store(explicit: str | None = None) -> str:
    """The store a reading command uses (:func:`refit.io.resolve_store_uri`), which must exist.

    A local folder that is not there is a mistyped ``REFIT_STORE`` (or a command run in the wrong
    folder), never "no models yet": it is an error naming the folder and where it came from.
    An ``s3://`` store is checked by its first request.
    """
    from refit.io import resolve_store_uri

    uri = resolve_store_uri(explicit)
    if uri.startswith("s3://") or Path(uri).is_dir():
        return uri
    if explicit:
        source = f"given as {explicit}"
    elif os.environ.get("REFIT_STORE"):
        source = f"REFIT_STORE={os.environ['REFIT_STORE']}"
    else:
        source = "the default ./.refit; REFIT_STORE is not set"
    # a new store for one's own data is a folder made on purpose (`mkdir -p`), so that a typo
    # never becomes a second registry with a first model "promoted" into it
    check = "the path" if explicit else "REFIT_STORE"
    raise ConfigError(
        f"store {uri} does not exist ({source}): check {check}; to start a new store there, "
        f"create the folder first (mkdir -p {shlex.quote(uri)})"
    )


def checked_inputs(config: Path, store: str | None = None) -> tuple[PipelineConfig, str]:
    """The parsed config and the existing store's URI, or a :class:`ConfigError` (one line)."""
    from refit.config_loader import load_config

    cfg = load_config(config)
    return cfg, existing_store(store)
