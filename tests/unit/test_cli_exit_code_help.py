"""`--help` states the exit codes the commands return: the text cannot drift from refit_cli.output."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from refit_cli.main import app
from refit_cli.output import DRIFT_TRIGGER_EXIT, ERROR_EXIT, RETRAIN_EXIT_CODES

WORDS = {"PROMOTE": "promoted", "REJECT": "rejected", "INCONCLUSIVE": "inconclusive", "SMOKE_FAILED": "smoke test"}


def _help(*args: str) -> str:
    out = CliRunner().invoke(app, [*args, "--help"], terminal_width=400)
    assert out.exit_code == 0, out.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", out.output).split())


def test_retrain_help_names_each_outcomes_exit_code() -> None:
    text = _help("retrain")
    assert set(WORDS) == set(RETRAIN_EXIT_CODES)
    for outcome, code in RETRAIN_EXIT_CODES.items():
        assert f"{code} {WORDS[outcome]}" in text, (outcome, text)
    assert f"{ERROR_EXIT} error" in text


def test_drift_help_names_the_trigger_exit_code() -> None:
    text = _help("drift")
    assert f"{DRIFT_TRIGGER_EXIT} the governor triggers a retrain" in text, text
    assert f"{ERROR_EXIT} an error" in text, text
