"""The ``refit`` console script: one line instead of a traceback where only the serving side is installed.

``pip install refit`` (or ``refit[capture]``) installs the capture writer and model loading, not
the packages the command needs (typer, Prefect, torch, Evidently: the ``pipeline`` extra).
"""

from __future__ import annotations

import sys

OWN_PACKAGES = frozenset({"refit", "refit_cli", "flows", "tasks", "schemas", "deployments"})


def main() -> None:
    try:
        from refit_cli.main import main as run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing in OWN_PACKAGES:
            raise
        sys.exit(
            f"refit: the command needs the pipeline extra ({missing} is not installed): pip install 'refit[pipeline]'"
        )
    run()
