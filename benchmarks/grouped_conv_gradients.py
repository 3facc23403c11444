"""Per-sample gradients of networks with grouped and depthwise convolutions: torch.func against
the closed form.

Grouped convolutions (ResNeXt, RegNet) and depthwise ones (MobileNet, EfficientNet, MNASNet,
ShuffleNet, ConvNeXt) used to send the whole network to ``torch.func`` (vmap over grad); they now
take the closed form, their rows computed by torch's weight-gradient kernel with the batch folded
into the groups (``core.fisher._grouped_rows``). For each network (torchvision's random
initialisation, a 10-class head, every Conv/Linear weight) this prints the seconds to build G
both ways, best of ``--repeat``, on Gaussian images of two sizes, and the largest difference
between the two G's relative to G's largest entry. The baseline, ``torch.func``, is measured in
the same run.

    python benchmarks/grouped_conv_gradients.py [--archs a,b] [--repeat 2]
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

from core.fisher import per_sample_gradients, supports_closed_form  # noqa: E402

ARCHS = "mobilenet_v3_small,shufflenet_v2_x0_5,mnasnet0_5,efficientnet_b0,regnet_y_400mf,resnext50_32x4d,convnext_tiny"
SIZES = ((32, 32), (224, 16))  # (image side, images): CIFAR-sized and ImageNet-sized


def _seconds(model, x, y, names, method: str, repeat: int) -> tuple[float, torch.Tensor]:
    best, G = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        G = per_sample_gradients(model, x, y, names, method=method).G
        best = min(best, time.perf_counter() - t0)
    return best, G


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=ARCHS)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeat}; "
          "random weights, 10-class heads, Gaussian images\n")
    print("| network | grouped convs | prunable weights | images | torch.func s (baseline) "
          "| closed form s | ratio | max rel diff |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(num_classes=10).eval()
        names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]
        assert supports_closed_form(model, names), arch
        grouped = sum(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())
        p = sum(dict(model.named_parameters())[n].numel() for n in names)
        for side, count in SIZES:
            x = torch.randn(count, 3, side, side)
            y = torch.randint(0, 10, (count,))
            t_func, G_func = _seconds(model, x, y, names, "func", args.repeat)
            t_closed, G_closed = _seconds(model, x, y, names, "closed_form", args.repeat)
            diff = float((G_func - G_closed).abs().max() / G_func.abs().max().clamp_min(1e-30))
            print(f"| {arch} | {grouped} | {p:,} | {count} × {side}² | {t_func:.2f} | "
                  f"{t_closed:.2f} | {t_closed / t_func:.2f}× | {diff:.1e} |", flush=True)
            del G_func, G_closed
    return 0


if __name__ == "__main__":
    sys.exit(main())
