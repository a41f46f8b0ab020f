"""What a model artifact may hold: the skops allow-list is exactly what refit's own families
produce, a tampered model.skops is refused before anything in it is built, the estimator is
the one its family makes, and malformed JSON files are one-line ModelArtifactErrors."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from refit.config import TrainingConfig
from refit.io.local import LocalStore
from refit.model import SKOPS_ALLOWED_TYPES, ModelArtifactError, load, load_skops, save_model
from refit.training import sklearn_models
from refit.training.search import select_candidate
from tests.unit.training_frames import churn_frame, make_config, split

TASKS = (("binary", 2), ("multiclass", 3), ("regression", 0))


def sio() -> ModuleType:
    """``skops.io`` as refit imports it (:func:`refit.skops_compat.skops_io`), when a test first
    uses it rather than at collection: a plain ``import skops.io`` builds skops' default trust
    list (a walk of scikit-learn, every ufunc named), 2 to 3 s that every xdist worker paid while
    collecting. That list then lacks scikit-learn's estimators and the ufuncs, so skops' own
    untrusted report below names more types, never fewer: every one must still be allowed."""
    from refit.skops_compat import skops_io

    return skops_io()


def schema_types(data: bytes) -> set[str]:
    """Every ``module.class`` a skops file names (JSON literals aside), read independently of refit."""
    schema = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("schema.json"))
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "__module__" in node and node.get("__loader__") != "JsonNode":
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def fit_family(family: str, task: str, n_classes: int, n_cat: int, early_stopping: bool = True) -> Any:
    rng = np.random.default_rng(0)
    n = 120
    x_num = rng.normal(size=(n, 3)).astype(np.float32)
    x_cat = rng.integers(0, 4, size=(n, n_cat)).astype(np.int64)
    y = rng.normal(size=n) if task == "regression" else np.arange(n) % n_classes
    params = {"max_iter": 5, "min_samples_leaf": 5, "early_stopping": early_stopping}
    result = sklearn_models.train_sklearn(
        family,
        x_num,
        x_cat,
        y,
        x_num,
        x_cat,
        y,
        task,  # type: ignore[arg-type]
        n_classes,
        params if family == "hist_gradient_boosting" else {},
        TrainingConfig(),
        cardinalities=[4] * n_cat,
    )
    return result.estimator, sklearn_models.design_matrix(x_num, x_cat)


CASES = [
    (family, task, n_classes, n_cat, early)
    for family in sklearn_models.FAMILIES
    for task, n_classes in TASKS
    for n_cat in (0, 2)
    for early in ((True, False) if family == "hist_gradient_boosting" else (True,))
]


@pytest.mark.parametrize(("family", "task", "n_classes", "n_cat", "early"), CASES)
def test_every_family_refit_trains_is_allowed_and_loads(
    family: str, task: str, n_classes: int, n_cat: int, early: bool
) -> None:
    """The allow-list cannot go stale: every family, task and input shape refit can train dumps
    to types on the list (skops' own untrusted report and the full schema), and loads back."""
    estimator, x = fit_family(family, task, n_classes, n_cat, early)
    data = sio().dumps(estimator)
    assert set(sio().get_untrusted_types(data=data)) <= SKOPS_ALLOWED_TYPES
    assert schema_types(data) <= SKOPS_ALLOWED_TYPES, sorted(schema_types(data) - SKOPS_ALLOWED_TYPES)
    loaded = load_skops(data, family, task)
    assert type(loaded) is type(estimator)
    method = "predict" if task == "regression" else "predict_proba"
    np.testing.assert_array_equal(getattr(loaded, method)(x), getattr(estimator, method)(x))


def test_the_allow_list_admits_no_package_wholesale() -> None:
    assert "numpy.lib.npyio.DataSource" not in SKOPS_ALLOWED_TYPES
    assert "sklearn.linear_model._base.LinearRegression" not in SKOPS_ALLOWED_TYPES
    assert not any(t.endswith(".*") or t.count(".") == 0 for t in SKOPS_ALLOWED_TYPES)


# --- tampered artifacts ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real artifact per scikit-learn family (churn, binary), saved once."""
    train, val = split(churn_frame(400))
    out = {}
    for family in sklearn_models.FAMILIES:
        params = {"max_iter": 15} if family == "hist_gradient_boosting" else {}
        config = make_config("churn", candidates=[{"family": family, "params": params}])
        result = select_candidate(train, val, config, None, "", torch.device("cpu"))
        root = tmp_path_factory.mktemp(family)
        save_model(LocalStore(root), "m", result.best, config, result.trials)
        out[family] = root / "m"
    return out


def copy_artifact(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def replant(folder: Path, name: str, data: bytes) -> None:
    """Replace one file and recompute the manifest, as someone with write access would."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def data_source_gadget(estimator: Any, target: Path) -> bytes:
    """``estimator`` dumped with a ``numpy.lib.npyio.DataSource`` riding along: its
    ``__del__`` deletes ``target`` once the loaded model is collected."""
    from numpy.lib.npyio import DataSource

    gadget = DataSource(destpath=str(target))
    gadget._istmpdest = True  # type: ignore[attr-defined]
    estimator.refit_cache = gadget
    try:
        return sio().dumps(estimator)
    finally:
        gadget._istmpdest = False  # type: ignore[attr-defined]  # the test's own copy deletes nothing
        del estimator.refit_cache


def test_a_data_source_gadget_is_refused_and_deletes_nothing(saved: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_artifact(saved["hist_gradient_boosting"], tmp_path / "m")
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    estimator = load(str(folder)).fitted.estimator
    data = data_source_gadget(estimator, target)
    assert "numpy.lib.npyio.DataSource" in sio().get_untrusted_types(data=data)
    replant(folder, "model.skops", data)
    with pytest.raises(ModelArtifactError, match=r"does not trust: numpy\.lib\.npyio\.DataSource$") as err:
        load(str(folder))
    assert "\n" not in str(err.value)
    del err
    gc.collect()
    assert (target / "keep.txt").read_text() == "keep"


def other_estimators() -> dict[str, bytes]:
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).normal(size=(30, 3))
    return {
        "pickle": pickle.dumps(LinearRegression().fit(x, x[:, 0])),
        "LinearRegression": sio().dumps(LinearRegression().fit(x, x[:, 0])),
        "OrderedDict": sio().dumps(OrderedDict(a=np.arange(3))),
    }


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("pickle", "model.skops is not a readable skops file"),
        ("LinearRegression", r"does not trust: sklearn\.linear_model\._base\.LinearRegression"),
        ("OrderedDict", r"does not trust: collections\.OrderedDict"),
    ],
)
def test_another_object_in_place_of_the_model_is_refused(
    saved: dict[str, Path], tmp_path: Path, kind: str, message: str
) -> None:
    folder = copy_artifact(saved["hist_gradient_boosting"], tmp_path / "m")
    replant(folder, "model.skops", other_estimators()[kind])
    with pytest.raises(ModelArtifactError, match=message) as err:
        load(str(folder))
    assert "\n" not in str(err.value)


def test_the_estimator_must_be_the_one_model_json_names(saved: dict[str, Path], tmp_path: Path) -> None:
    """A linear Pipeline (allowed types, loads fine) under an artifact that says hist_gradient_boosting."""
    folder = copy_artifact(saved["hist_gradient_boosting"], tmp_path / "m")
    replant(folder, "model.skops", (saved["linear"] / "model.skops").read_bytes())
    with pytest.raises(
        ModelArtifactError,
        match="holds a Pipeline, not the HistGradientBoostingClassifier that model.json's family 'hist_gradient",
    ):
        load(str(folder))
    # and the other way round, with a classifier where the family says regression
    info = json.loads((folder / "model.json").read_text())
    replant(folder, "model.skops", (saved["hist_gradient_boosting"] / "model.skops").read_bytes())
    replant(folder, "model.json", json.dumps({**info, "task": "regression", "classes": None}).encode())
    with pytest.raises(ModelArtifactError, match="not the HistGradientBoostingRegressor"):
        load(str(folder))


@pytest.mark.parametrize("family", sklearn_models.FAMILIES)
def test_each_family_round_trips_through_save_and_load(saved: dict[str, Path], family: str) -> None:
    loaded = load(str(saved[family]))
    assert loaded.family == family and loaded.pinned is False
    _, val = split(churn_frame(400))
    proba = loaded.predict_proba(val)
    assert proba.shape == (len(val), 2) and np.allclose(proba.sum(axis=1), 1.0)


# --- malformed JSON --------------------------------------------------------------------------


def _edit(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(doc)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()

MALFORMED = [
    ("model.json", lambda d: b"{not json", "model.json is not valid JSON"),
    ("model.json", lambda d: b"[1, 2]", "model.json is malformed at top level"),
    ("model.json", lambda d: _edit(d, family=_DROP), "model.json is malformed at family: Field required"),
    ("model.json", lambda d: _edit(d, task="ranking"), "model.json is malformed at task"),
    ("model.json", lambda d: _edit(d, classes=[0]), "needs at least two classes"),
    ("model.json", lambda d: _edit(d, classes="01"), "model.json is malformed at classes"),
    ("model.json", lambda d: _edit(d, target_mean="zero"), "model.json is malformed at target_mean"),
    ("model.json", lambda d: _edit(d, weights=7), "model.json is malformed at weights"),
    ("model.json", lambda d: _edit(d, weights="model.pkl"), "unknown weights format 'model.pkl'"),
    ("model.json", lambda d: _edit(d, family="torch_mlp"), "family 'torch_mlp', which is not a scikit-learn family"),
    ("input_schema.json", lambda d: b"\xff\xfe", "input_schema.json is not valid JSON"),
    ("input_schema.json", lambda d: _edit(d, columns=_DROP), "input_schema.json is malformed at columns"),
    ("input_schema.json", lambda d: _edit(d, columns=[{"name": 3, "dtype": "x"}]), "at columns.0.name"),
    ("input_schema.json", lambda d: _edit(d, columns=["age"]), "input_schema.json is malformed at columns.0"),
    ("input_schema.json", lambda d: _edit(d, numeric=["age"]), "disagree on the numeric/categorical columns"),
    ("preprocessing.json", lambda d: b"null", "preprocessing.json is malformed at top level"),
    ("preprocessing.json", lambda d: _edit(d, medians=_DROP), "preprocessing.json is malformed at medians"),
    ("preprocessing.json", lambda d: _edit(d, medians=d["medians"][:1]), "one per numeric column"),
    ("preprocessing.json", lambda d: _edit(d, scales=["1"] * len(d["scales"])), "at scales.0"),
    ("preprocessing.json", lambda d: _edit(d, vocab={}), "vocab must have exactly one entry"),
    ("preprocessing.json", lambda d: _edit(d, format_version=99), "preprocessing format version 99"),
    ("metrics.json", lambda d: b'"text"', "metrics.json is malformed: expected a JSON object"),
    ("trials.json", lambda d: b"{}", "trials.json is malformed: expected a JSON list"),
]


@pytest.mark.parametrize(("name", "edit", "message"), MALFORMED)
def test_malformed_json_is_one_line_model_artifact_error(
    saved: dict[str, Path], tmp_path: Path, name: str, edit: Any, message: str
) -> None:
    folder = copy_artifact(saved["hist_gradient_boosting"], tmp_path / "m")
    changed = edit(json.loads((folder / name).read_text()))
    replant(folder, name, changed if isinstance(changed, bytes) else json.dumps(changed).encode())
    with pytest.raises(ModelArtifactError, match=message) as err:
        load(str(folder))
    assert "\n" not in str(err.value)


def test_a_malformed_manifest_is_one_line_model_artifact_error(saved: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_artifact(saved["hist_gradient_boosting"], tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    for files in ({"model.json": "abc"}, ["model.json"], {**manifest["files"], "model.json": {"sha256": 1}}):
        (folder / "manifest.json").write_text(json.dumps({**manifest, "files": files}))
        with pytest.raises(ModelArtifactError, match="is not a valid manifest"):
            load(str(folder))
    escape = {**manifest["files"], "../outside.json": {"sha256": "0" * 64}}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "files": escape}))
    with pytest.raises(ModelArtifactError, match="lists a file outside the artifact"):
        load(str(folder))


def test_a_bit_generator_name_swapped_for_a_function_is_refused() -> None:
    """numpy.random.Generator is allowed, but skops rebuilds it by calling ``numpy.random.<name>``
    with a name stored as a plain string: a name that is not a bit generator is refused."""
    estimator, _ = fit_family("hist_gradient_boosting", "binary", 2, 0)
    data = sio().dumps(estimator)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    assert b'"\\"PCG64\\""' in members["schema.json"]
    members["schema.json"] = members["schema.json"].replace(b'"\\"PCG64\\""', b'"\\"seed\\""')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ModelArtifactError, match=r"does not trust: numpy\.random\.seed$"):
        load_skops(out.getvalue(), "hist_gradient_boosting", "binary")
