"""Per-sample conv weight gradients: `F.unfold` + bmm against `core.fisher.conv_weight_rows`.

Prints, for ResNet20's conv shapes at a chunk of 128 samples, the milliseconds of the im2col form
(the baseline), of the two paths `conv_weight_rows` chooses between, and of what it chooses; then
the seconds to build all of G for ResNet20 (n = 1000) when ../shared is present.

    python benchmarks/conv_gradients.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import mean_ms  # noqa: E402

from core import fisher  # noqa: E402
from core.fisher import conv_weight_rows, per_sample_gradients  # noqa: E402

SHAPES = [(16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]


def _im2col(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    cols = F.unfold(a, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                    stride=conv.stride)
    return torch.bmm(g.reshape(g.shape[0], g.shape[1], -1), cols.transpose(1, 2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, chunk of {args.batch} samples\n")
    print("| conv (C_in→C_out, map, stride) | F.unfold + bmm (baseline) | per-offset products | "
          "strided patch view | conv_weight_rows | ratio to baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c_in, c_out, size, stride in SHAPES:
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        a = torch.randn(args.batch, c_in, size, size)
        g = torch.randn(args.batch, c_out, size // stride, size // stride)
        ref = _im2col(a, g, conv)
        timings = {}
        for label, threshold in (("offsets", 0), ("patches", 10**9), ("chosen", None)):
            saved = fisher.SHIFT_MIN_POSITIONS
            if threshold is not None:
                fisher.SHIFT_MIN_POSITIONS = threshold
            try:
                torch.testing.assert_close(conv_weight_rows(a, g, conv), ref, rtol=1e-4, atol=1e-3)
                timings[label] = mean_ms(lambda: conv_weight_rows(a, g, conv), args.repeat)
            finally:
                fisher.SHIFT_MIN_POSITIONS = saved
        base = mean_ms(lambda: _im2col(a, g, conv), args.repeat)
        print(f"| {c_in}→{c_out}, {size}×{size}, {stride} | {base:.1f} ms | {timings['offsets']:.1f} ms | "
              f"{timings['patches']:.1f} ms | {timings['chosen']:.1f} ms | {timings['chosen'] / base:.2f}× |")

    shared = ROOT.parent / "shared"
    if not (shared / "models" / "resnet20_cifar10.pt").exists():
        print("\n../shared is missing: skipping the whole-G timing.")
        return 0
    from core.data import load_bundle
    from core.model_io import load_model
    from core.pruning import default_layers

    loaded = load_model(shared / "models" / "resnet20_cifar10.pt", arch="resnet20")
    bundle = load_bundle(str(shared / "data" / "cifar10"), preset="resnet20")
    names = default_layers(loaded.model, "resnet20")
    x, y = bundle.calibration.x[:1000], bundle.calibration.y[:1000]
    print("\n| ResNet20, n = 1000, all of G | seconds |")
    print("| --- | --- |")
    best = {}
    for label, rows_fn in (("F.unfold + bmm (baseline)", _im2col), ("conv_weight_rows", conv_weight_rows)):
        fisher.conv_weight_rows = rows_fn  # the closed form looks the function up at call time
        try:
            runs = []
            for _ in range(2):
                t0 = time.perf_counter()
                per_sample_gradients(loaded.model, x, y, names)
                runs.append(time.perf_counter() - t0)
        finally:
            fisher.conv_weight_rows = conv_weight_rows
        best[label] = min(runs)
        print(f"| {label} | {min(runs):.2f} (best of 2: {', '.join(f'{r:.2f}' for r in runs)}) |")
    print(f"\nratio: {best['conv_weight_rows'] / best['F.unfold + bmm (baseline)']:.2f}× the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
