"""The importance map's Fisher diagonal on large networks: how a block's squares are summed.

``core.fisher.streamed_fisher_diagonal`` makes the per-sample gradient rows a few images at a
time and keeps only the sum of their squares. It used to copy a block of rows (up to 128, as
many as fit in half the available RAM three times over) into a buffer and sum their squares
with one float64 reduction over the rows, ``(rows * rows).sum(0, dtype=float64)`` (the
baseline). A first change added each row's square in place into a float32 block sum
(``addcmul_``), still from the buffer (the previous step). Now the squares are added straight
from each chunk's per-layer gradients (``core.fisher.gradient_chunks``), with no buffer: the
rows held at once are a chunk's, at most ``CHUNK_BYTES``. All three are re-implemented or
called here and measured in the same run, for each network (torchvision's random
initialisation, a 10-class head, every Conv/Linear weight, 256 Gaussian images at 32×32, as
the app's importance map takes), with the largest relative difference from the baseline and
the gradient rows each way holds at once (from the block-size rules, not measured).

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


def _buffered(model, x, y, names, in_place: bool) -> tuple[torch.Tensor, int]:
    """The earlier loops: blocks of rows copied into a buffer, then their squares summed by a
    float64 reduction over the rows or (``in_place``) row by row into a float32 sum."""
    p = sum(dict(model.named_parameters())[nm].numel() for nm in names)
    block = max(1, min(128, len(x), int(fisher.available_memory_bytes() // 2 / (p * 4 * 3))))
    buf = torch.empty(block, p, dtype=torch.float32)
    total = torch.zeros(p, dtype=torch.float64)
    for start in range(0, len(x), block):
        rows = fisher.per_sample_gradients(model, x[start:start + block], y[start:start + block],
                                           names, chunk=block, out=buf).G
        if in_place:
            acc = torch.zeros(p, dtype=torch.float32)
            for row in rows:
                acc.addcmul_(row, row)
            total += acc
        else:
            total += (rows * rows).sum(0, dtype=torch.float64)
    return (total / len(x)).to(torch.float32), block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=ARCHS)
    ap.add_argument("--images", type=int, default=256)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.images} Gaussian "
          "images at 32×32, random weights, 10-class heads\n")
    print("| network | prunable weights | float64 reduction s (baseline) | buffer, squares in place s "
          "| from the chunks s (current) | ratio to baseline | max rel diff | rows held: buffer / chunk |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=10).eval()
        names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
        x = torch.randn(args.images, 3, 32, 32)
        y = torch.randint(0, 10, (args.images,))
        t0 = time.perf_counter()
        old, block = _buffered(model, x, y, names, in_place=False)
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        mid, _ = _buffered(model, x, y, names, in_place=True)
        t_mid = time.perf_counter() - t0
        t0 = time.perf_counter()
        new = fisher.streamed_fisher_diagonal(model, x, y, names)
        t_new = time.perf_counter() - t0
        diff = max(float(((old - d).abs() / old.abs().clamp_min(1e-30)).max()) for d in (mid, new))
        p = old.numel()
        chunk = max(1, min(128, args.images, fisher.CHUNK_BYTES // (4 * p)))
        print(f"| {arch} | {p:,} | {t_old:.1f} | {t_mid:.1f} | {t_new:.1f} | {t_new / t_old:.2f}× | "
              f"{diff:.1e} | {block} / {chunk} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
