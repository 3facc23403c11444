"""Shared by the ResNet20 diagnostics: the ../shared checkpoint and data, or a message if absent."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

from core import pruning
from core.data import ImageSet, load_bundle
from core.model_io import load_model
from core.pruning import PruneRequest, PruneResult, prune_path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETUPS = {"resnet20": ("models/resnet20_cifar10.pt", "data/cifar10"),
          "mlpnet": ("models/mlpnet_mnist.pt", "data/mnist")}


def accuracy_text(ev) -> str:
    """An EvalResult's accuracy in % with its 95% interval: "86.29 [83.81, 88.44]"."""
    lo, hi = ev.accuracy_ci
    return f"{100 * ev.accuracy:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"


def points_text(d) -> str:
    """A PairedDifference in points with its 95% interval: "+3.66 [+1.53, +5.78]"."""
    return f"{100 * d.difference:+.2f} [{100 * d.ci[0]:+.2f}, {100 * d.ci[1]:+.2f}]"


def load_shared(arch: str = "resnet20"):
    """(loaded model, data bundle) for ``arch`` from ../shared, or None after saying it is missing."""
    if not SHARED.is_dir():
        print(f"{SHARED} is missing: this benchmark needs the shared checkpoints and data.", file=sys.stderr)
        return None
    model_file, data = SETUPS[arch]
    return load_model(SHARED / model_file, arch=arch), load_bundle(str(SHARED / data), preset=arch)


def shared_or_exit(arch: str = "resnet20"):
    """:func:`load_shared`, or exit with status 2 (after its message) when ../shared is missing."""
    shared = load_shared(arch)
    if shared is None:
        sys.exit(2)
    return shared


def prune_at(loaded, bundle, arch: str, req: PruneRequest, sparsities: list[float]
             ) -> tuple[list[PruneResult], list[float]]:
    """Results and seconds per sparsity: CHITA++ prunes them all along one schedule (its
    seconds split evenly), every other method runs once per sparsity (a user's wait for it)."""
    if req.method == "chita++":
        t0 = time.perf_counter()
        results = prune_path(loaded.model, bundle.calibration, req, sparsities, arch=arch)
        return results, [(time.perf_counter() - t0) / len(sparsities)] * len(sparsities)
    results, seconds = [], []
    for s in sparsities:
        t0 = time.perf_counter()
        results += prune_path(loaded.model, bundle.calibration, replace(req, sparsity=s), [s], arch=arch)
        seconds.append(time.perf_counter() - t0)
    return results, seconds


# A recalibrating run's statistics came from 2000 calibration images until 2026-12-06, now from
# core.pruning.BN_IMAGES = 1000 (read when called: a benchmark may set it). Validation images
# skip 2000 either way, so validation figures before and after that change are on the same images.
VALIDATION_SKIP = 2000


def unused_calibration(calibration, seed: int, images: int, holdout: int, recalibrated: bool) -> ImageSet:
    """The calibration images a run used for nothing: after G's ``images``, the ``holdout``
    held-out images and (when BatchNorm was recalibrated) the rest of its statistics' images, in
    the order the engine's seed gives them (``core.pruning._Context.build``)."""
    x, y = calibration.x, calibration.y
    if seed:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x, y = x[perm], y[perm]
    used = images + holdout + (max(0, max(pruning.BN_IMAGES, VALIDATION_SKIP) - images) if recalibrated else 0)
    return replace(calibration, x=x[used:], y=y[used:], indices=None)


def validation_images(calibration, seed: int, result) -> ImageSet:
    """:func:`unused_calibration` for a finished ``result`` of seed ``seed``."""
    images = int(result.info["samples"]) * int(result.info.get("images_per_row", 1))
    recalibrated = "recalibration" in result.info or "recalibration_stages" in result.info
    return unused_calibration(calibration, seed, images, int(result.info["holdout"]), recalibrated)
