"""Shared by the ResNet20 diagnostics: the ../shared checkpoint and data, or a message if absent."""

from __future__ import annotations

import sys
from pathlib import Path

from core.data import load_bundle
from core.model_io import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETUPS = {"resnet20": ("models/resnet20_cifar10.pt", "data/cifar10"),
          "mlpnet": ("models/mlpnet_mnist.pt", "data/mnist")}


def load_shared(arch: str = "resnet20"):
    """(loaded model, data bundle) for ``arch`` from ../shared, or None after saying it is missing."""
    if not SHARED.is_dir():
        print(f"{SHARED} is missing: this benchmark needs the shared checkpoints and data.", file=sys.stderr)
        return None
    model_file, data = SETUPS[arch]
    return load_model(SHARED / model_file, arch=arch), load_bundle(str(SHARED / data), preset=arch)
