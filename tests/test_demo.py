"""The built-in demo: seeded training on scikit-learn's digits, its cache, and the digits split."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from core.demo import (
    DEMO_MODELS,
    cache_dir,
    demo_cache_path,
    digits_split,
    digits_tensors,
    load_demo,
    train_demo,
)
from core.errors import Cancelled, StudioError
from core.model_io import load_model
from core.progress import CancelToken


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for one test."""
    monkeypatch.setenv("CHITA_STUDIO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _test_accuracy(model: torch.nn.Module) -> float:
    x, y = digits_tensors()
    _, test_idx = digits_split()
    with torch.no_grad():
        return (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()


def test_digits_split_is_fixed_disjoint_and_30_percent():
    train, test = digits_split()
    assert len(train) + len(test) == 1797 and len(test) == 539
    assert not set(train.tolist()) & set(test.tolist())
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    again_train, again_test = digits_split()
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert train.dtype == np.int64 and np.all(np.diff(test) > 0)


def test_digits_tensors_are_normalised():
    x, y = digits_tensors()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01
    assert set(y.unique().tolist()) == set(range(10))


def test_mlp_demo_trains_caches_and_reloads_identically(fresh_cache):
    reports = []
    start = time.perf_counter()
    first = load_demo("digits_mlp", progress=reports.append)
    train_seconds = time.perf_counter() - start

    assert (first.source, first.format, first.arch, first.preset) == ("demo:digits_mlp", "demo", "digits_mlp", "digits")
    assert first.input_shape == (1, 8, 8) and first.num_classes == 10 and not first.model.training
    assert _test_accuracy(first.model) > 0.90
    assert train_seconds < 30
    assert reports and reports[-1].fraction == 1.0 and reports[-1].stage.startswith("Training demo")
    assert len({r.done for r in reports}) == len(reports) >= 10  # one report per epoch (plus the start)
    path = demo_cache_path("digits_mlp")
    assert path.parent == fresh_cache and path.is_file()
    assert not list(fresh_cache.glob("*.tmp"))

    cached_reports = []
    start = time.perf_counter()
    second = load_demo("digits_mlp", progress=cached_reports.append)
    assert time.perf_counter() - start < max(1.0, train_seconds / 2)
    assert not cached_reports  # nothing trained
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name

    via_load_model = load_model("demo:digits_mlp")
    assert via_load_model.format == "demo"
    assert torch.equal(via_load_model.model.fc1.weight, first.model.fc1.weight)


def test_cnn_demo_reaches_95_percent(fresh_cache):
    loaded = load_demo("digits_cnn")
    assert _test_accuracy(loaded.model) > 0.95
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.model.modules())
    assert demo_cache_path("digits_cnn").is_file()


def test_corrupt_cache_is_replaced_by_retraining(fresh_cache):
    reference = load_demo("digits_mlp").model.state_dict()
    path = demo_cache_path("digits_mlp")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated

    reports = []
    recovered = load_demo("digits_mlp", progress=reports.append)
    assert reports  # it trained again
    assert torch.equal(recovered.model.fc3.weight, reference["fc3.weight"])  # seeded: same weights
    assert torch.load(path, weights_only=True).keys() == reference.keys()  # cache rewritten whole


def test_training_leaves_threads_and_random_state_alone(fresh_cache):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    train_demo("digits_mlp")
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)


def test_cancel_stops_training_and_caches_nothing(fresh_cache):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        load_demo("digits_cnn", cancel=token)
    assert not demo_cache_path("digits_cnn").exists()


def test_unwritable_cache_still_returns_the_model(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CHITA_STUDIO_CACHE", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="Could not cache"):
        loaded = load_demo("digits_mlp")
    assert _test_accuracy(loaded.model) > 0.90


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("CHITA_STUDIO_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("CHITA_STUDIO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "chita-studio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "chita-studio"


def test_unknown_demo_name():
    with pytest.raises(StudioError) as err:
        load_demo("digits_transformer")
    assert all(name in str(err.value) for name in DEMO_MODELS)
