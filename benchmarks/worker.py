"""Runs one benchmark function in this (fresh) process: ``python -m benchmarks.worker MOD:FN KWARGS OUT``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def main() -> None:
    target, kwargs, out = sys.argv[1:4]
    module, _, function = target.partition(":")
    result = getattr(importlib.import_module(f"benchmarks.{module}"), function)(**json.loads(kwargs))
    Path(out).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
