"""`refit generate` and `refit validate` as a user types them, on the local store and on S3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
REFIT = str(Path(sys.executable).parent / "refit")


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")} | env
    return subprocess.run([REFIT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


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
