"""Smoke test of saved artifacts in a fresh process: good passes, damaged or sabotaged fails."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from refit.io.local import LocalStore
from refit.model import save_model
from refit.smoke import check_result, smoke_test
from refit.training.search import select_candidate
from tests.unit.training_frames import churn_frame, make_config, split

CPU = torch.device("cpu")
BOUND = 60_000.0  # ms per 1k rows: generous, the CI machine is shared


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    train, val = split(churn_frame(400))
    config = make_config(candidates=[{"family": "torch_mlp", "params": {"max_epochs": 2, "hidden": [[16]]}}])
    return select_candidate(train, val, config, None, "", CPU), val, config


def save(tmp_path: Path, fitted, config) -> str:  # type: ignore[no-untyped-def]
    return save_model(LocalStore(tmp_path), "model", fitted, config)


@pytest.mark.slow
def test_good_artifact_passes(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, val, config = trained
    report = smoke_test(save(tmp_path, result.best, config), val, BOUND, "binary")
    assert report.passed, report.reasons
    assert report.reasons == [] and report.rows == len(val)
    assert report.details["output_shape"] == [len(val), 2] and 0 < report.ms_per_1k_rows < BOUND


@pytest.mark.slow
def test_corrupted_artifact_fails_on_its_hash(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, val, config = trained
    uri = save(tmp_path, result.best, config)
    weights = Path(uri) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    report = smoke_test(uri, val, BOUND, "binary")
    assert not report.passed
    assert len(report.reasons) == 1 and report.reasons[0].startswith("load failed: model file model.safetensors")
    assert "sha256" in report.reasons[0]


@pytest.mark.slow
def test_model_producing_nan_fails(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, val, config = trained
    broken = copy.deepcopy(result.best)
    with torch.no_grad():
        broken.torch_model.mlp[-1].bias.fill_(float("nan"))
    report = smoke_test(save(tmp_path, broken, config), val, BOUND, "binary")
    assert not report.passed
    assert any("NaN value(s) in the output" in r for r in report.reasons)


def _summary(**overrides):  # type: ignore[no-untyped-def]
    base = {
        "ok": True, "task": "binary", "family": "torch_mlp", "n_classes": 2, "output_shape": [10, 2],
        "output_dtype": "float64", "n_nan": 0, "n_inf": 0, "labels_len": 10, "ms_per_1k_rows": 5.0,
        "proba_min": 0.1, "proba_max": 0.9, "max_row_sum_error": 0.0, "labels_in_classes": True,
    }  # fmt: skip
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("overrides", "task", "reason"),
    [
        (
            {"ms_per_1k_rows": 50.0},
            "binary",
            "latency 50.0 ms per 1k rows exceeds training.smoke_max_ms_per_1k_rows 20",
        ),
        ({"output_shape": [10, 3]}, "binary", "output shape [10, 3], expected [10, 2]"),
        ({"proba_max": 1.5}, "binary", "probabilities outside [0, 1]"),
        ({"max_row_sum_error": 0.2}, "binary", "do not sum to 1"),
        ({"n_inf": 2}, "binary", "2 infinite value(s)"),
        ({"output_dtype": "int64"}, "binary", "not floating point"),
        ({"labels_in_classes": False}, "binary", "not among the model's classes"),
        ({}, "regression", "model task is binary, expected regression"),
        ({"ok": False, "stage": "predict", "error": "boom"}, "binary", "predict failed: boom"),
    ],
)
def test_check_result_reasons(overrides, task: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    report = check_result(_summary(**overrides), 10, 20.0, task)
    assert not report.passed
    assert any(reason in r for r in report.reasons), report.reasons


def test_check_result_passes_a_clean_summary() -> None:
    assert check_result(_summary(), 10, 20.0, "binary").passed
    regression = _summary(task="regression", output_shape=[10], n_classes=0)
    assert check_result(regression, 10, 20.0, "regression").passed


@pytest.mark.slow
def test_latency_of_a_small_sample_is_timed_on_enough_rows(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """20 rows timed alone measure per-call overhead, scaled 50 times: the sample is repeated up
    to 1,000 rows, and calls repeat until 0.2 s have passed (median)."""
    from refit.smoke import MIN_TIMING_ROWS, TIMING_REPEATS, summarise

    result, val, config = trained
    small = val.head(20)[config.feature_columns].reset_index(drop=True)
    summary = summarise(save(tmp_path, result.best, config), small)
    assert summary["ok"] and summary["output_shape"] == [20, 2] and summary["labels_len"] == 20
    assert summary["timing_rows"] == MIN_TIMING_ROWS
    assert len(summary["timings_ms"]) >= TIMING_REPEATS
    assert sum(summary["timings_ms"]) >= 200.0 or len(summary["timings_ms"]) == 100


@pytest.mark.slow
def test_the_child_runs_in_the_environment_of_each_call(trained, s3_store, s3_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """The child forks from a forkserver started by an earlier call: the environment it runs in
    is the one this call passes (here, where the S3 artifact is), not the forkserver's."""
    import os

    result, val, config = trained
    uri = save_model(s3_store, "model", result.best, config)
    assert uri.startswith("s3://")
    closed = smoke_test(uri, val, BOUND, "binary", env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert not closed.passed and closed.reasons[0].startswith("load failed")
    served = smoke_test(uri, val, BOUND, "binary", env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint})
    assert served.passed, served.reasons


@pytest.mark.slow
def test_a_child_that_dies_is_a_failed_smoke_test_with_its_last_words(tmp_path: Path) -> None:
    """An exception the child does not handle (here: the sample is not parquet) kills it; the
    reason is its exit code and the last lines it wrote."""
    from refit.smoke import _run_child

    bogus = tmp_path / "sample.parquet"
    bogus.write_text("not parquet")
    log = tmp_path / "child.log"
    code = _run_child([str(tmp_path), str(bogus), str(tmp_path / "out.json"), str(log)], {}, 120)
    assert code == 1 and "ArrowInvalid" in log.read_text() and not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_a_hung_child_is_killed_at_the_timeout_and_the_next_smoke_test_runs(tmp_path: Path) -> None:
    """A child blocked for good (here reading its sample from a FIFO nobody writes) is killed
    after ``timeout_s``; the server lives on and answers the next call."""
    import os

    from refit.smoke import _run_child

    fifo = tmp_path / "sample.parquet"
    os.mkfifo(fifo)
    args = [str(tmp_path), str(fifo), str(tmp_path / "out.json"), str(tmp_path / "hung.log")]
    assert _run_child(args, {}, 2) is None
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("not parquet")
    assert _run_child([str(tmp_path), str(bogus), str(tmp_path / "o.json"), str(tmp_path / "next.log")], {}, 120) == 1


SCRIPT_WITHOUT_MAIN_GUARD = """
import sys
from pathlib import Path

from refit.smoke import _run_child

folder = Path(sys.argv[1])
with open(folder / "runs.txt", "a") as runs:  # a user's script: it does its work at import
    runs.write("ran\\n")
(folder / "sample.parquet").write_text("not parquet")
print(_run_child([str(folder), str(folder / "sample.parquet"), str(folder / "out.json"), str(folder / "log")], {}, 120))
"""


@pytest.mark.slow
def test_a_callers_script_is_not_run_again_in_the_smoke_child(tmp_path: Path) -> None:
    """multiprocessing's forkserver and spawn re-run the caller's ``__main__`` script in each
    child; the smoke server does not: a script without a ``__main__`` guard runs once."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1" and (tmp_path / "runs.txt").read_text() == "ran\n"
