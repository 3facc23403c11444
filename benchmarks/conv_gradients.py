"""Per-sample conv weight gradients: `F.unfold` + bmm against `core.fisher.conv_weight_rows`.

Prints, for ResNet20's conv shapes at a chunk of 128 samples (inputs in both memory formats;
ResNet20's activations are channels-last), the milliseconds of the im2col form (the baseline),
of each path `conv_weight_rows` chooses between, and of what it chooses; then the seconds to
build all of G for ResNet20 (n = 1000) when ../shared is present, with the im2col form, with the
previous choice (per-offset products over strided views for every large map) and with the
current one (over the flattened padded grid at stride 1).

    python benchmarks/conv_gradients.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import mean_ms  # noqa: E402

from core import fisher  # noqa: E402
from core.fisher import (  # noqa: E402
    _rows_flat,
    _rows_offsets,
    _rows_patches,
    conv_weight_rows,
    per_sample_gradients,
)

SHAPES = [(16, 16, 32, 1), (16, 32, 32, 2), (32, 32, 16, 1), (32, 64, 16, 2), (64, 64, 8, 1)]


def _im2col(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    cols = F.unfold(a, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                    stride=conv.stride)
    return torch.bmm(g.reshape(g.shape[0], g.shape[1], -1), cols.transpose(1, 2))


def _previous(a: torch.Tensor, g: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv_weight_rows as it chose before the flattened grid: strided views for large maps."""
    if g.shape[2] * g.shape[3] >= fisher.SHIFT_MIN_POSITIONS:
        return _rows_offsets(a, g, conv)
    return _rows_patches(a, g, conv)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, chunk of {args.batch} samples\n")
    print("| conv (C_in→C_out, map, stride) | input | F.unfold + bmm (baseline) | offsets, strided views | "
          "offsets, flattened grid | patch view | conv_weight_rows | ratio to baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c_in, c_out, size, stride in SHAPES:
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        for fmt, memory_format in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
            a = torch.randn(args.batch, c_in, size, size).contiguous(memory_format=memory_format)
            g = torch.randn(args.batch, c_out, size // stride, size // stride).contiguous(
                memory_format=memory_format)
            ref = _im2col(a, g, conv)
            cells = []
            for fn in (_rows_offsets, _rows_flat, _rows_patches, conv_weight_rows):
                if fn is _rows_flat and stride != 1:
                    cells.append("—")
                    continue
                torch.testing.assert_close(fn(a, g, conv), ref, rtol=1e-4, atol=1e-3)
                cells.append(mean_ms(lambda fn=fn: fn(a, g, conv), args.repeat))
            base = mean_ms(lambda: _im2col(a, g, conv), args.repeat)
            print(f"| {c_in}→{c_out}, {size}×{size}, {stride} | {fmt} | {base:.1f} ms | "
                  + " | ".join(c if isinstance(c, str) else f"{c:.1f} ms" for c in cells)
                  + f" | {cells[-1] / base:.2f}× |", flush=True)

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
    labels = {"F.unfold + bmm (baseline)": _im2col, "previous choice (strided views)": _previous,
              "conv_weight_rows": conv_weight_rows}
    runs: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(3):  # the three alternate, so that a slow stretch of the machine hits all
        for label, rows_fn in labels.items():
            fisher.conv_weight_rows = rows_fn  # the closed form looks the function up at call time
            try:
                t0 = time.perf_counter()
                per_sample_gradients(loaded.model, x, y, names)
                runs[label].append(time.perf_counter() - t0)
            finally:
                fisher.conv_weight_rows = conv_weight_rows
    best = {label: min(r) for label, r in runs.items()}
    for label, r in runs.items():
        print(f"| {label} | {best[label]:.2f} (best of 3: {', '.join(f'{v:.2f}' for v in r)}) |")
    print(f"\nratio: {best['conv_weight_rows'] / best['F.unfold + bmm (baseline)']:.2f}× the baseline, "
          f"{best['conv_weight_rows'] / best['previous choice (strided views)']:.2f}× the previous choice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
