"""Operators racing on the champion, on a local folder and on S3 (moto over real HTTP).

Two operators who saw the same champion and both undo (or replace) it: exactly one moves it,
by exactly one step, and the other gets a one-line conflict naming the champion now. Checked
through the CLI's own code path in threads released by a barrier, and with real ``refit``
processes started together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from refit.errors import ConflictError
from refit.io import Store
from refit.registry import Registry
from refit_cli.model_commands import promote_champion, rollback_champion
from tests.lanes import repeats

#: Races per test; make test-fast runs one (an S3 round is ~1 s of moto requests). Every round must
#: end the same way (both operators act on the same read); more rounds give the two threads more
#: chances to interleave differently.
ROUNDS = repeats(full=7, fast=1)
REFIT = str(Path(sys.executable).parent / "refit")


def operators(n: int, act: Callable[[int, int | None], Any], read: Callable[[], int | None]) -> list[Any]:
    """``n`` operators: each reads the champion (as the command does when it starts), waits for
    the others, then acts on what it read. Results or exceptions, in order."""
    barrier = threading.Barrier(n)

    def one(i: int) -> Any:
        seen = read()
        barrier.wait()
        try:
            return act(i, seen)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def champion_at_3(store: Store, name: str) -> None:
    reg = Registry(store)
    for i in range(1, 5):
        reg.register(name, artifact_uri=f"s3://models/{name}/{i}")
    for expected, version in ((None, 1), (1, 2), (2, 3)):
        reg.promote(name, version, expected_current=expected)


@pytest.mark.usefixtures("moto_atomic_objects")
def test_two_operators_rolling_back_at_once_move_the_champion_back_once(store: Store) -> None:
    for r in range(ROUNDS):
        name = f"churn{r}"
        champion_at_3(store, name)
        results = operators(
            2,
            lambda i, seen: rollback_champion(Registry(store), name, f"op{i}", seen),  # noqa: B023
            lambda: Registry(store).aliases(name).get("champion"),  # noqa: B023
        )
        won = [x for x in results if not isinstance(x, BaseException)]
        lost = [x for x in results if isinstance(x, BaseException)]
        assert len(won) == 1 and len(lost) == 1, (r, results)
        assert (won[0].action, won[0].from_version, won[0].to_version) == ("rollback", 3, 2)
        assert isinstance(lost[0], ConflictError)
        assert str(lost[0]) == f"champion of {name} moved from 3 to 2 by another writer; re-read and retry"
        reg = Registry(store)
        assert reg.aliases(name) == {"champion": 2}  # one step back, not two
        assert [e.action for e in reg.history(name)] == ["set", "set", "set", "rollback"]


@pytest.mark.usefixtures("moto_atomic_objects")
@pytest.mark.parametrize("targets", [(4, 4), (4, 1)], ids=["same-version", "different-versions"])
def test_two_operators_promoting_at_once_one_wins(store: Store, targets: tuple[int, int]) -> None:
    for r in range(ROUNDS):
        name = f"churn{r}"
        champion_at_3(store, name)
        results = operators(
            2,
            lambda i, seen: promote_champion(Registry(store), name, targets[i], f"op{i}", seen),  # noqa: B023
            lambda: Registry(store).aliases(name).get("champion"),  # noqa: B023
        )
        won = [x for x in results if not isinstance(x, BaseException)]
        lost = [x for x in results if isinstance(x, BaseException)]
        assert len(won) == 1 and len(lost) == 1, (r, results)
        now = won[0].to_version
        assert won[0].from_version == 3 and now in targets
        assert isinstance(lost[0], ConflictError)
        assert str(lost[0]) == f"champion of {name} moved from 3 to {now} by another writer; re-read and retry"
        reg = Registry(store)
        assert reg.aliases(name) == {"champion": now}
        assert len(reg.history(name)) == 4  # exactly one move on top of 1 -> 2 -> 3


def test_a_retried_task_promotion_stays_a_no_op(local_store: Store) -> None:
    """The pipeline's promote (not exclusive) still treats finding its own move done as success."""
    champion_at_3(local_store, "churn")
    reg = Registry(local_store)
    first = reg.promote("churn", 4, expected_current=3)
    assert reg.promote("churn", 4, expected_current=3) == first
    with pytest.raises(ConflictError, match="moved from 3 to 4"):
        reg.promote("churn", 4, expected_current=3, exclusive=True)


# --- real processes --------------------------------------------------------------------------


def refit_env(store_uri: str, folder: Path, endpoint: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {"REFIT_STORE": store_uri, "PREFECT_HOME": str(folder / "prefect-home")}
    if endpoint:
        env["REFIT_S3_ENDPOINT_URL"] = endpoint
    return env


def started_together(args: list[list[str]], env: dict[str, str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen([REFIT, *a], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in args]  # fmt: skip
    outs = []
    for proc, a in zip(procs, args, strict=True):
        out, err = proc.communicate(timeout=120)
        outs.append(subprocess.CompletedProcess(a, proc.returncode, out, err))
    return outs


@pytest.mark.slow
@pytest.mark.usefixtures("moto_atomic_objects")
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_cli_rollbacks_started_together_one_wins(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: Store = request.getfixturevalue(f"{backend}_store")
    endpoint = request.getfixturevalue("s3_endpoint") if backend == "s3" else None
    champion_at_3(store, "churn")
    env = refit_env(store.uri, tmp_path, endpoint)
    cmd = ["models", "rollback", "churn", "--reason", "bad canary", "--expect-version", "3"]
    outs = started_together([cmd, cmd], env, tmp_path)
    codes = sorted(o.returncode for o in outs)
    assert codes == [0, 1], [(o.returncode, o.stderr[-500:]) for o in outs]
    loser = next(o for o in outs if o.returncode == 1)
    assert loser.stderr == "error: champion of churn moved from 3 to 2 by another writer; re-read and retry\n"
    assert Registry(store).aliases("churn") == {"champion": 2}
    stale = subprocess.run([REFIT, "models", "promote", "churn", "4", "--reason", "x", "--expect-version", "3"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert stale.returncode == 1
    assert stale.stderr == "error: champion of churn moved from 3 to 2 by another writer; re-read and retry\n"
    fine = subprocess.run([REFIT, "models", "promote", "churn", "4", "--reason", "x", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert fine.returncode == 0, fine.stderr
    assert Registry(store).aliases("churn") == {"champion": 4}
