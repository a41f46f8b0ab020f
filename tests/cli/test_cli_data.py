"""`refit generate` and `refit validate` as a user types them, on the local store and on S3
(through the command-line app in this process: ``tests.cli.test_cli_models.run_in_process``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.cli.test_cli_models import run_in_process

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_in_process(args, cwd, env, store=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "refit.yaml", tmp_path / "refit.yaml")
    return tmp_path


def test_generate_then_validate_on_local_store(workdir: Path) -> None:
    gen = run(["generate", "base", "--rows", "3000", "--json"], workdir)
    assert gen.returncode == 0, gen.stderr
    result = json.loads(gen.stdout)
    assert result["rows"] == 3000 and 0.1 < result["churn_rate"] < 0.4
    data = workdir / ".refit/datasets/churn/base/part-00000.parquet"
    assert data.is_file() and len(pd.read_parquet(data)) == 3000

    ok = run(["validate", str(data)], workdir)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("PASS") and "3,000 of 3,000 rows valid" in ok.stdout

    prod = run(
        [
            "generate",
            "production",
            "--batches",
            "2",
            "--rows-per-batch",
            "500",
            "--drift",
            "covariate",
            "--segment",
            "region=south",
            "--json",
        ],
        workdir,
    )
    assert prod.returncode == 0, prod.stderr
    produced = json.loads(prod.stdout)
    assert produced["rows"] == 1000 and produced["labels"] > 0 and produced["segment"] == "region=south"
    captures = sorted((workdir / ".refit/captures/churn/requests").rglob("*.parquet"))
    assert len(captures) >= 2
    cap = run(["validate", str(captures[0]), "--kind", "capture", "--json"], workdir)
    assert cap.returncode == 0 and json.loads(cap.stdout)["passed"] is True


def test_bad_file_one_line_error_exit_1_and_quarantine(workdir: Path) -> None:
    from tests.factories import churn_rows

    df = churn_rows(200)
    df["region"] = df["region"].astype(object)
    df.loc[:9, "region"] = "atlantis"
    bad = workdir / "bad.csv"
    df.to_csv(bad, index=False)
    out = run(["validate", "bad.csv"], workdir)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: 10 of 200 rows invalid") and "region isin" in line
    quarantined = list((workdir / ".refit/quarantine/churn").rglob("rows.parquet"))
    assert len(quarantined) == 1
    rows = pd.read_parquet(quarantined[0])
    assert len(rows) == 10 and set(rows["region"]) == {"atlantis"}
    assert rows["_refit_errors"].str.contains("region: isin").all()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "file is empty"),
        ("corrupt.parquet", b"PAR1 this is not parquet", "cannot parse parquet"),
        ("quote.csv", b'region,plan\n"north,basic\nsouth,premium\n', "cannot parse csv"),
    ],
)
def test_unreadable_files_fail_on_one_line(workdir: Path, name: str, content: bytes, expected: str) -> None:
    (workdir / name).write_bytes(content)
    out = run(["validate", name, "--json"], workdir)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    payload = json.loads(out.stdout)
    assert payload["ok"] is False and expected in payload["error"] and name in payload["error"]


def test_missing_column_names_file_column_and_rule(workdir: Path) -> None:
    from tests.factories import churn_rows

    churn_rows(50).drop(columns=["plan"]).to_parquet(workdir / "noplan.parquet")
    out = run(["validate", "noplan.parquet"], workdir)
    assert out.returncode == 1
    assert "noplan.parquet: missing required column(s) plan (rule: column_in_dataframe" in out.stderr


def test_generate_and_validate_against_s3(workdir: Path, s3_endpoint: str, s3_client, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    env = {"REFIT_STORE": f"s3://{s3_bucket}/demo", "AWS_ENDPOINT_URL": s3_endpoint}
    gen = run(["generate", "base", "--rows", "2000", "--json"], workdir, **env)
    assert gen.returncode == 0, gen.stderr
    assert json.loads(gen.stdout)["uris"] == [f"s3://{s3_bucket}/demo/datasets/churn/base/part-00000.parquet"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert "demo/datasets/churn/base/part-00000.parquet" in keys
    ok = run(["validate", "datasets/churn/base/part-00000.parquet"], workdir, **env)
    assert ok.returncode == 0, ok.stderr
    bad = run(["validate", f"s3://{s3_bucket}/demo/nope.parquet"], workdir, **env)
    assert bad.returncode == 1 and "not found" in bad.stderr
    missing_bucket = run(
        ["validate", "x.parquet"], workdir, REFIT_STORE="s3://no-such-bucket-refit/x", AWS_ENDPOINT_URL=s3_endpoint
    )
    assert missing_bucket.returncode == 1 and "no such bucket" in missing_bucket.stderr


def test_generate_rejects_bad_segment(workdir: Path) -> None:
    out = run(["generate", "production", "--segment", "region"], workdir)
    assert out.returncode == 2 and "COL=VALUE" in out.stderr


TRUE_WORDS = ["true", "yes", "1", "True", "YES"]
FALSE_WORDS = ["no", "false", "0", "False", "NO"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_lossy_values_are_quarantined_and_clean_rows_keep_their_values(workdir: Path, fmt: str) -> None:
    """A "no" is False, 0.6 is no label, 35.9 no tenure: the bad rows land in the quarantine with
    their rule, and the clean rows pass with exactly the values meant (same fingerprint)."""
    from refit.fingerprint import fingerprint_frame
    from schemas.churn import ChurnTrainingSchema
    from tests.factories import churn_rows

    meant = churn_rows(1000)
    df = meant.copy()
    df["autopay"] = [(TRUE_WORDS if v else FALSE_WORDS)[i % 5] for i, v in enumerate(meant["autopay"])]
    df.loc[11, "autopay"] = "maybe"
    for column, row, value in [("churned", 4, 0.6), ("customer_id", 7, 0.7), ("tenure_months", 9, 35.9)]:
        df[column] = df[column].astype("float64")
        df.loc[row, column] = value
    path = workdir / f"lossy.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)

    out = run(["validate", path.name, "--json"], workdir)
    assert out.returncode == 0, out.stderr  # 4 of 1,000 rows: under the demo's 1% limit
    result = json.loads(out.stdout)
    assert (result["rows"], result["valid_rows"], result["invalid_rows"]) == (1000, 996, 4)
    rules = {(f["column"], f["rule"], f["count"]) for f in result["failures"]}
    assert rules == {
        ("autopay", "coerce_dtype('bool'): not true/false, yes/no or 1/0", 1),
        ("churned", "coerce_dtype('int64'): fractional part", 1),
        ("customer_id", "coerce_dtype('int64'): fractional part", 1),
        ("tenure_months", "coerce_dtype('int64'): fractional part", 1),
    }
    assert all(f["sources"] == [str(path)] for f in result["failures"])
    rows = pd.read_parquet(result["quarantine_uri"])
    assert list(rows["_refit_row"]) == [4, 7, 9, 11]
    assert list(rows["_refit_errors"]) == [
        "churned: coerce_dtype('int64'): fractional part (got 0.6)",
        "customer_id: coerce_dtype('int64'): fractional part (got 0.7)",
        "tenure_months: coerce_dtype('int64'): fractional part (got 35.9)",
        "autopay: coerce_dtype('bool'): not true/false, yes/no or 1/0 (got maybe)",
    ]
    assert set(rows["_refit_source"]) == {str(path)}
    expected = ChurnTrainingSchema.validate(meant.drop(index=[4, 7, 9, 11]).reset_index(drop=True))
    assert result["fingerprint"] == fingerprint_frame(expected).to_dict()

    human = run(["validate", path.name], workdir)
    assert human.returncode == 0 and human.stdout.startswith("PASS")
    assert "autopay: coerce_dtype('bool'): not true/false, yes/no or 1/0 x1 e.g. 'maybe'" in human.stdout


def test_a_huge_value_is_not_echoed_whole(workdir: Path) -> None:
    from tests.factories import churn_rows

    df = churn_rows(50)
    df["region"] = df["region"].astype(object)
    df.loc[[3, 8], "region"] = "z" * 1_000_000
    df.to_csv(workdir / "huge.csv", index=False)
    for args in (["validate", "huge.csv"], ["validate", "huge.csv", "--json"]):
        out = run(args, workdir)
        assert out.returncode == 1
        assert len(out.stdout) + len(out.stderr) < 5_000
        assert "region isin" in out.stdout + out.stderr and "1,000,002 chars" in out.stdout + out.stderr
    quarantined = list((workdir / ".refit/quarantine/churn").rglob("rows.parquet"))
    assert len(quarantined) == 2  # one per run
    assert all(set(pd.read_parquet(q)["region"]) == {"z" * 1_000_000} for q in quarantined)  # kept whole


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("pandas:DataFrame", "it is a class DataFrame, not a pandera DataFrameModel subclass"),
        ("os:system", "'os' is a standard-library module"),
        ("this:s", "'this' is a standard-library module"),
    ],
)
def test_a_config_schema_that_is_no_schema_is_one_line(workdir: Path, schema: str, says: str) -> None:
    from tests.factories import churn_rows

    config = workdir / "refit.yaml"
    config.write_text(config.read_text().replace("schemas.churn:ChurnTrainingSchema", schema))
    churn_rows(20).to_parquet(workdir / "rows.parquet")
    out = run(["validate", "rows.parquet"], workdir)
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"error: '{schema}' is not a schema: ") and says in line
    assert out.stdout == ""  # nothing printed by an imported module (the Zen of Python)
