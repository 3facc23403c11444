"""The deflate level of the reported compressed size: seconds and bytes at levels 1, 6 and 9.

Every run in the app, every export and the dense baseline report the ONNX file's deflate size
(what an unstructured-sparse model costs to download). This script serialises pruned networks
with the exporter the app uses and compresses the bytes at zlib levels 1, 6 (zlib's, gzip's and
zip's default) and 9, best of ``--repeat``:

- MLPNet and ResNet20 from ../shared, magnitude-pruned at 90%;
- torchvision's ConvNeXt-T (random weights, 10-class head, 3×32×32), magnitude-pruned at 50%:
  a 106 MiB file, the size of networks users bring.

    python benchmarks/compression_level.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402

from core.architectures import build_architecture  # noqa: E402
from core.export import _eval_copy, _export_bytes  # noqa: E402
from core.model_io import load_model  # noqa: E402

SHARED = ROOT.parent / "shared"
LEVELS = (1, 6, 9)


def magnitude_pruned(model: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    """The model with the smallest weights of every conv/linear weight zeroed (per layer)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                k = int(sparsity * p.numel())
                if k:
                    p[p.abs() <= p.abs().flatten().kthvalue(k).values] = 0
    return model


def networks() -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    out = []
    if (SHARED / "models").is_dir():
        for name, file, shape in (("MLPNet 90%", "mlpnet_mnist.pt", (1, 28, 28)),
                                  ("ResNet20 90%", "resnet20_cifar10.pt", (3, 32, 32))):
            arch = file.split("_")[0]
            out.append((name, magnitude_pruned(load_model(SHARED / "models" / file, arch=arch).model, 0.9),
                        shape))
    torch.manual_seed(0)
    out.append(("ConvNeXt-T 50%", magnitude_pruned(build_architecture("convnext_tiny", num_classes=10), 0.5),
                (3, 32, 32)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}; best of {args.repeat}\n")
    print("| network | .onnx MiB | " + " | ".join(f"level {lv} MiB (s)" for lv in LEVELS)
          + " | level 6 ÷ level 9: bytes, seconds |")
    print("| --- | --- | " + " | ".join("---" for _ in LEVELS) + " | --- |")
    for name, model, shape in networks():
        data, _ = _export_bytes(_eval_copy(model.eval()), torch.zeros(1, *shape), None)
        sizes, secs = {}, {}
        for lv in LEVELS:
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                sizes[lv] = len(zlib.compress(data, lv))
                best = min(best, time.perf_counter() - t0)
            secs[lv] = best
        cells = " | ".join(f"{sizes[lv] / 2**20:.3f} ({secs[lv]:.2f})" for lv in LEVELS)
        print(f"| {name} | {len(data) / 2**20:.3f} | {cells} | {sizes[6] / sizes[9]:.4f}×, "
              f"{secs[6] / secs[9]:.3f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
