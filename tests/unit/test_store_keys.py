"""Key validation, glob translation, "bad keys never reach the disk or the network", and the
one store layout every module takes its keys from."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from refit.errors import InvalidKeyError, StoreError
from refit.io.base import _glob_to_regex, validate_key, validate_prefix
from refit.io.layout import LAYOUT
from refit.io.local import LocalStore
from refit.io.s3 import S3Store

BAD_KEYS = [
    "",
    "..",
    ".",
    "../escape.csv",
    "a/../b",
    "a/./b",
    "a/..",
    "/abs/path.csv",
    "/",
    "a//b",
    "a/",
    "a/b/",
    "//",
    "a\\b",
    "..\\evil",
    "a\nb",
    "a\x00b",
    "tab\there",
    "a\rb",
    "bell\x07",
    "esc\x1b[0m",
    "\x1f",
]

GOOD_KEYS = [
    "a",
    "data.csv",
    "data/train.parquet",
    "a/b/c/d/e.csv",
    "runs/2024-01-01T00:00:00Z/metrics.json",
    "with space/and-dash_underscore.v2.csv",
    "...",  # only '.' and '..' segments are special
    "a/..b/c..",
    ".hidden",
    "ünïcode/ファイル.csv",
    "x" * 500,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        validate_key(key)
    message = str(info.value)
    assert message.startswith("invalid key ")
    assert "\n" not in message, "messages are one line even when the key has a newline"


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


def test_invalid_key_error_is_a_store_error_and_a_value_error() -> None:
    with pytest.raises(StoreError):
        validate_key("../x")
    with pytest.raises(ValueError):
        validate_key("../x")


@pytest.mark.parametrize("key", [None, 3, b"bytes"])
def test_non_string_keys_are_rejected(key: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)  # type: ignore[arg-type]


def test_error_messages_say_what_is_wrong() -> None:
    cases = {
        "": "must not be empty",
        "/x": "absolute",
        "a//b": "empty path segment",
        "a/": "empty path segment",
        "a/../b": "'..' segments",
        "a\\b": "backslashes",
    }
    for key, expected in cases.items():
        with pytest.raises(InvalidKeyError, match=expected):
            validate_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "data/sub/", "data/tr", ".hid"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/a", "../", "a//", "a//b", "a/../", "a\\b", "x\n"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_prefix(prefix)


# --- glob translation (no store needed) -------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("*.csv", "a.csv", True),
        ("*.csv", "dir/a.csv", False),  # '*' does not cross '/'
        ("data/*", "data/a.csv", True),
        ("data/*", "data/sub/a.csv", False),
        ("data/**", "data/sub/deep/a.csv", True),  # '**' does
        ("**.csv", "x/y/z.csv", True),
        ("data/**/*.csv", "data/a.csv", True),  # '**/' also matches zero folders
        ("data/**/*.csv", "data/x/y/a.csv", True),
        ("data/**/*.csv", "data/x/y/a.parquet", False),
        ("**/a.csv", "a.csv", True),
        ("**/a.csv", "p/q/a.csv", True),
        ("**/a.csv", "p/qa.csv", False),
        ("a**/b", "ab", False),  # only a whole-segment '**/' may match nothing
        ("a**/b", "axx/b", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),  # '?' does not cross '/' either
        ("[ab].csv", "a.csv", True),
        ("[ab].csv", "c.csv", False),
        ("[!a].csv", "b.csv", True),
        ("[!a].csv", "a.csv", False),
        ("x[!a]y", "x/y", False),
        ("[.*]x", ".x", True),  # '.' and '*' inside a class are literal
        ("[.*]x", "zx", False),
        ("f.csv", "fxcsv", False),  # '.' is literal
        ("a+b(1).csv", "a+b(1).csv", True),  # regex metacharacters are literal
        ("[oops", "[oops", True),  # an unclosed '[' is literal
    ],
)
def test_glob_regex(pattern: str, key: str, matches: bool) -> None:
    assert bool(_glob_to_regex(pattern).fullmatch(key)) is matches


# --- bad keys are rejected before any I/O ------------------------------------------------


class _NoIOClient:
    """An S3 client double: any use of it is a failure (a bad key must not reach S3)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        self.calls.append(name)
        raise AssertionError(f"S3 client used: {name}")


def _store_calls(key: str):  # type: ignore[no-untyped-def]
    return {
        "get": lambda s: s.get(key),
        "get_bytes": lambda s: s.get_bytes(key),
        "put_bytes": lambda s: s.put_bytes(key, b"data"),
        "put_if_absent": lambda s: s.put_if_absent(key, b"data"),
        "put_if_unchanged": lambda s: s.put_if_unchanged(key, b"data", "v1"),
        "exists": lambda s: s.exists(key),
        "delete": lambda s: s.delete(key),
        "uri_for": lambda s: s.uri_for(key),
        "glob": lambda s: s.glob(key),
    }


METHOD_NAMES = list(_store_calls("x"))
IO_BAD_KEYS = ["", "../escape", "/etc/passwd", "a//b", "a/", "a\\b", "a\nb", "a/../../b"]


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("key", IO_BAD_KEYS)
def test_local_store_rejects_bad_keys_before_io(tmp_path, key: str, method: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "store"
    store = LocalStore(root)
    with pytest.raises(InvalidKeyError):
        _store_calls(key)[method](store)
    # nothing was created: not the root, not a lock folder, nothing next to the root
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("key", IO_BAD_KEYS)
def test_s3_store_rejects_bad_keys_before_io(key: str, method: str) -> None:
    client = _NoIOClient()
    store = S3Store("s3://bucket/prefix", client)
    with pytest.raises(InvalidKeyError):
        _store_calls(key)[method](store)
    assert client.calls == []


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a\\b/"])
def test_list_rejects_bad_prefixes_before_io(tmp_path, prefix: str) -> None:  # type: ignore[no-untyped-def]
    client = _NoIOClient()
    with pytest.raises(InvalidKeyError):
        S3Store("s3://bucket", client).list(prefix)
    assert client.calls == []
    with pytest.raises(InvalidKeyError):
        LocalStore(tmp_path / "store").list(prefix)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("pattern", ["../*", "/abs/*.csv", "a//*", "*/", "a\\*", "**/../x"])
def test_glob_rejects_bad_patterns_before_io(tmp_path, pattern: str) -> None:  # type: ignore[no-untyped-def]
    client = _NoIOClient()
    with pytest.raises(InvalidKeyError):
        S3Store("s3://bucket", client).glob(pattern)
    assert client.calls == []
    with pytest.raises(InvalidKeyError):
        LocalStore(tmp_path / "store").glob(pattern)


def test_local_path_rejects_bad_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidKeyError):
        store.local_path("../outside")
    assert store.local_path("a/b.csv") == (tmp_path / "store" / "a" / "b.csv").resolve()


@pytest.mark.parametrize("key", [".locks", ".locks/abc.lock", ".data.csv.x1y2.tmp", "dir/.data.csv.abc.tmp"])
def test_local_store_reserves_its_own_names(tmp_path, key: str) -> None:  # type: ignore[no-untyped-def]
    """Lock files and in-flight temp files are hidden from list(); so they can't be keys."""
    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidKeyError, match="reserved"):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.get(key)
    assert not (tmp_path / "store").exists()


def test_names_close_to_reserved_ones_are_fine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    keys = ["locks", ".lockss/x", "data/.locks/x", "notes.tmp", ".hidden", "a.tmp/b"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert store.list() == sorted(keys)
    assert [store.get_bytes(k) for k in keys] == [k.encode() for k in keys]


# --- the store layout ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "src" / "refit", ROOT / "flows", ROOT / "tasks", ROOT / "deployments", ROOT / "refit_cli"]
LAYOUT_MODULE = ROOT / "src" / "refit" / "io" / "layout.py"


def test_the_layout_gives_the_keys_existing_stores_hold() -> None:
    """Stores written before the layout existed must keep working: these strings are pinned."""
    run = LAYOUT.run("churn", "20261124T153000123456Z-1a2b3c4d")
    assert run.prefix == "runs/churn/20261124T153000123456Z-1a2b3c4d/"
    assert run.validated == "runs/churn/20261124T153000123456Z-1a2b3c4d/validated.parquet"
    assert run.split("validation") == "runs/churn/20261124T153000123456Z-1a2b3c4d/split/validation.parquet"
    assert run.candidate == "runs/churn/20261124T153000123456Z-1a2b3c4d/candidate"
    assert run.dossier == "runs/churn/20261124T153000123456Z-1a2b3c4d/dossier/"
    assert LAYOUT.runs_prefix == "runs/"
    quarantine = LAYOUT.quarantine("churn-captures", "20261124T153000123456Z")
    assert quarantine.rows == "quarantine/churn-captures/20261124T153000123456Z/rows.parquet"
    assert quarantine.summary == "quarantine/churn-captures/20261124T153000123456Z/summary.json"
    assert LAYOUT.capture_requests("churn") == "captures/churn/requests/"
    assert LAYOUT.capture_labels("churn") == "captures/churn/labels/"
    assert LAYOUT.drift_report("churn", "20261124T150000000000Z") == "drift/churn/reports/20261124T150000000000Z.html"
    assert LAYOUT.drift_history("churn") == "drift/churn/history/"
    assert LAYOUT.governor_ledger("churn") == "governor/churn/ledger/"
    assert LAYOUT.governor_index("churn") == "governor/churn/index.json"
    assert LAYOUT.webhook_outbox("churn") == "webhook/churn/outbox/"
    assert LAYOUT.registry_model("churn") == "registry/churn/"
    assert LAYOUT.registry_model("churn", root="other/registry") == "other/registry/churn/"
    assert LAYOUT.folders() == (
        "runs",
        "quarantine",
        "captures",
        "drift",
        "governor",
        "webhook",
        "registry",
        "replay",
    )
    assert LAYOUT.replay_timeline("churn", "png") == "replay/churn/timeline.png"


def test_every_layout_key_is_a_valid_store_key() -> None:
    run = LAYOUT.run("churn", "r1")
    for key in (run.validated, run.split("train"), run.candidate, LAYOUT.governor_index("churn")):
        assert validate_key(key) == key
    for prefix in (run.prefix, run.dossier, LAYOUT.capture_requests("churn"), LAYOUT.webhook_outbox("churn")):
        assert validate_prefix(prefix) == prefix


def _key_literals(source: str, where: str) -> list[str]:
    """String constants (f-string parts included, docstrings not) that start with a top-level folder."""
    tree = ast.parse(source, filename=where)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    folders = tuple(f"{folder}/" for folder in LAYOUT.folders())
    return [
        f"{where}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value.startswith(folders)
    ]


def test_the_key_scan_finds_literal_keys() -> None:
    source = 'def f(model, stamp):\n    """Writes drift/<model>/ (a docstring is fine)."""\n'
    source += '    return f"drift/{model}/reports/{stamp}.html", "captures/" + model, "drift share"\n'
    assert _key_literals(source, "x.py") == ["x.py:3: 'drift/'", "x.py:3: 'captures/'"]


def test_no_product_module_but_the_layout_spells_a_store_key() -> None:
    """A key written as a literal elsewhere is a second copy of the layout that can disagree with it."""
    modules = [p for folder in PRODUCT for p in sorted(folder.rglob("*.py")) if p != LAYOUT_MODULE]
    assert len(modules) > 40  # the scan saw the product code
    hits = [hit for path in modules for hit in _key_literals(path.read_text(), str(path.relative_to(ROOT)))]
    assert hits == []


# --- which store a run uses ----------------------------------------------------------------


def test_one_rule_chooses_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refit.config import Settings
    from refit.io import resolve_store_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REFIT_STORE", raising=False)
    assert resolve_store_uri() == str(tmp_path / ".refit")  # the default, made absolute
    monkeypatch.setenv("REFIT_STORE", "env-store")
    assert resolve_store_uri() == resolve_store_uri("  ") == str(tmp_path / "env-store")
    assert resolve_store_uri("given") == str(tmp_path / "given")  # an explicit store wins
    assert resolve_store_uri(f"file://{tmp_path}/given/") == str(tmp_path / "given")
    assert resolve_store_uri("s3://bucket/refit") == "s3://bucket/refit"
    assert resolve_store_uri(None, Settings(store="s3://other")) == "s3://other"
