"""The built-in demo: small models trained on scikit-learn's digits at first use, then cached.

scikit-learn ships the 1,797 8x8 digits inside its wheel, so the demo needs neither ``../shared``
nor internet. Training is seeded and takes seconds; the weights are cached in the user cache
folder (``$CHITA_STUDIO_CACHE``, else ``$XDG_CACHE_HOME/chita-studio``, else
``~/.cache/chita-studio``) and loaded with ``weights_only=True`` afterwards.

:func:`digits_split` is the one train/test split of the digits: the demo trains on the train
part, and the data module uses the train part for calibration and the test part for evaluation.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.architectures import ARCH_INFO, DIGITS_MEAN, DIGITS_STD, build_architecture
from core.errors import StudioError
from core.model_io import LoadedModel
from core.progress import CancelToken, ProgressFn, check, report

DEMO_MODELS: tuple[str, ...] = ("digits_mlp", "digits_cnn")
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0

# Bump when a recipe changes so that old caches are not reused.
_RECIPE_VERSION = 1
_RECIPES: dict[str, dict[str, float]] = {
    "digits_mlp": {"epochs": 20, "lr": 3e-3, "batch": 64, "seed": 0},
    "digits_cnn": {"epochs": 8, "lr": 3e-3, "batch": 64, "seed": 0},
}


def cache_dir() -> Path:
    """The user cache folder of CHITA Studio (not created here)."""
    env = os.environ.get("CHITA_STUDIO_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "chita-studio"


def demo_cache_path(name: str) -> Path:
    """Where the trained weights of demo model ``name`` are cached."""
    return cache_dir() / f"demo_{name}_v{_RECIPE_VERSION}.pt"


def digits_split(seed: int = DIGITS_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train/test split of the 1,797 digits: sorted (train_idx, test_idx), test = 30%."""
    n = _digits_count()
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(DIGITS_TEST_FRACTION * n))
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits, normalised with the "digits" preset: x (1797, 1, 8, 8) float32 and y (1797,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0 - DIGITS_MEAN) / DIGITS_STD
    return torch.from_numpy(x).unsqueeze(1).contiguous(), torch.from_numpy(data.target.astype(np.int64))


def _digits_count() -> int:
    from sklearn.datasets import load_digits

    return int(load_digits().target.shape[0])


def load_demo(
    name: str = "digits_mlp",
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> LoadedModel:
    """The demo model ``name`` (one of :data:`DEMO_MODELS`): trained on first use, then from the cache.

    A damaged cache file is replaced by training again. If the cache folder is not writable the
    model is still returned (and trained again next time).
    """
    if name not in DEMO_MODELS:
        raise StudioError(
            f"Unknown demo model '{name}'.",
            field="demo",
            fix=f"Use one of: {', '.join(DEMO_MODELS)}.",
        )
    model = build_architecture(name)
    path = demo_cache_path(name)
    if not _load_cached(model, path):
        state = train_demo(name, progress=progress, cancel=cancel).state_dict()
        model.load_state_dict(state)
        _save_atomic(state, path)
    model.eval()
    info = ARCH_INFO[name]
    return LoadedModel(
        model=model,
        source=f"demo:{name}",
        format="demo",
        arch=name,
        input_shape=info.input_shape,
        preset=info.preset,
        num_classes=info.num_classes,
    )


def train_demo(
    name: str,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> nn.Module:
    """Train demo model ``name`` on the train part of :func:`digits_split` (seeded, Adam); eval mode.

    Runs on one thread: these models are tiny, so one thread is fastest (many times faster on a busy
    machine) and the weights do not depend on the core count. The caller's RNG state and thread
    count are restored afterwards.
    """
    if name not in _RECIPES:
        raise StudioError(f"Unknown demo model '{name}'.", field="demo", fix=f"Use one of: {', '.join(DEMO_MODELS)}.")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            return _train(name, _RECIPES[name], progress, cancel).eval()
    finally:
        torch.set_num_threads(threads)


def _train(
    name: str,
    recipe: dict[str, float],
    progress: ProgressFn | None,
    cancel: CancelToken | None,
) -> nn.Module:
    epochs, batch, seed = int(recipe["epochs"]), int(recipe["batch"]), int(recipe["seed"])
    x, y = digits_tensors()
    train_idx, _ = digits_split()
    x_train, y_train = x[train_idx], y[train_idx]
    stage = f"Training demo model {name}"
    report(progress, stage, 0, epochs)
    torch.manual_seed(seed)
    model = build_architecture(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    shuffle = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=shuffle)
        for start in range(0, len(order), batch):
            check(cancel)
            idx = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        report(progress, stage, epoch + 1, epochs, f"epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}")
    return model


def _load_cached(model: nn.Module, path: Path) -> bool:
    """Load cached weights into ``model``; False if there are none or they are unusable."""
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception:  # damaged, truncated or from another recipe: retrain
        return False
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def _save_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and os.replace; warn (not fail) on OSError."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        warnings.warn(f"Could not cache the demo model at {path}: {exc}", RuntimeWarning, stacklevel=3)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


__all__ = [
    "DEMO_MODELS",
    "cache_dir",
    "demo_cache_path",
    "digits_split",
    "digits_tensors",
    "load_demo",
    "train_demo",
]
