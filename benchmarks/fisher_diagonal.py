"""The importance map's Fisher diagonal on large networks: how a block's squares are summed.

``core.fisher.streamed_fisher_diagonal`` makes the per-sample gradient rows a block at a time
and keeps only the sum of their squares. It used to sum them with one float64 reduction over the
rows, ``(rows * rows).sum(0, dtype=float64)`` (the baseline, re-implemented here); it now adds
each row's square in place into a float32 block sum (``addcmul_``) and adds that to the float64
total. For each network (torchvision's random initialisation, a 10-class head, every Conv/Linear
weight, 256 Gaussian images at 32×32, as the app's importance map takes) this prints both ways'
seconds, measured in the same run, and their largest relative difference.

    python benchmarks/fisher_diagonal.py [--archs a,b] [--images 256]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402
import torchvision  # noqa: E402

from core import fisher  # noqa: E402

ARCHS = "resnet18,efficientnet_b0,convnext_tiny"


def _float64_reduction(model, x, y, names) -> torch.Tensor:
    """The previous loop: the same blocks, squares reduced over the rows in float64."""
    p = sum(dict(model.named_parameters())[nm].numel() for nm in names)
    block = max(1, min(128, len(x), int(fisher.available_memory_bytes() // 2 / (p * 4 * 3))))
    buf = torch.empty(block, p, dtype=torch.float32)
    total = torch.zeros(p, dtype=torch.float64)
    for start in range(0, len(x), block):
        rows = fisher.per_sample_gradients(model, x[start:start + block], y[start:start + block],
                                           names, chunk=block, out=buf).G
        total += (rows * rows).sum(0, dtype=torch.float64)
    return (total / len(x)).to(torch.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=ARCHS)
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.images} Gaussian "
          "images at 32×32, random weights, 10-class heads\n")
    print("| network | prunable weights | float64 reduction s (baseline) | in-place squares s "
          "| ratio | max rel diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=10).eval()
        names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
        x = torch.randn(args.images, 3, 32, 32)
        y = torch.randint(0, 10, (args.images,))
        t0 = time.perf_counter()
        old = _float64_reduction(model, x, y, names)
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        new = fisher.streamed_fisher_diagonal(model, x, y, names)
        t_new = time.perf_counter() - t0
        diff = float(((old - new).abs() / old.abs().clamp_min(1e-30)).max())
        p = old.numel()
        print(f"| {arch} | {p:,} | {t_old:.1f} | {t_new:.1f} | {t_new / t_old:.2f}× | {diff:.1e} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
