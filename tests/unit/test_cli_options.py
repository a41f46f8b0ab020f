"""--as-of reads ISO 8601 times; one without a zone is UTC; a typo is one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from refit.errors import ConfigError
from refit_cli.options import parse_as_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T12:00:00Z", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02 12:00", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),
        ("2026-03-02T14:00:00+02:00", datetime(2026, 3, 2, 14, tzinfo=timezone(timedelta(hours=2)))),
    ],
)
def test_as_of_is_an_aware_time(text: str, expected: datetime) -> None:
    parsed = parse_as_of(text)
    assert parsed == expected and parsed is not None and parsed.tzinfo is not None


def test_no_as_of_is_now_and_a_typo_is_one_line() -> None:
    assert parse_as_of(None) is None
    with pytest.raises(ConfigError, match=r"^--as-of 'last tuesday' is not an ISO 8601 time \(e\.g\. "):
        parse_as_of("last tuesday")


def test_models_diff_without_the_projects_yaml_says_to_pass_it(tmp_path: Path) -> None:
    """`refit models diff` falls back to the config stored with the version; a user's schema
    module lives beside their YAML, so from elsewhere the import failed with no hint."""
    from types import SimpleNamespace

    from refit.config_loader import load_config
    from refit_cli.model_commands import _diff_config
    from tests.flows.helpers import write_config

    stored = load_config(write_config(tmp_path)).to_dict()
    stored["dataset"]["schema"] = "loan_schemas_nowhere:LoanSchema"
    with pytest.raises(ConfigError) as info:
        _diff_config(tmp_path / "absent.yaml", SimpleNamespace(config=stored), "loans:3")
    message = str(info.value)
    assert "cannot import 'loan_schemas_nowhere'" in message and "pass the project's YAML with --config" in message


def test_a_store_that_is_not_there_says_how_to_start_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`refit retrain` and `refit drift` refuse a missing store (a typo must not become a second
    registry); the line said to run `refit demo` or `refit generate`, which write churn demo data."""
    from refit_cli.preflight import existing_store

    missing = tmp_path / "mine"
    monkeypatch.setenv("REFIT_STORE", str(missing))
    with pytest.raises(ConfigError) as refused:
        existing_store()
    assert str(refused.value) == (
        f"store {missing} does not exist (REFIT_STORE={missing}): check REFIT_STORE; to start a new store "
        f"there, create the folder first (mkdir -p {missing})"
    )
    missing.mkdir()
    assert existing_store() == str(missing)
