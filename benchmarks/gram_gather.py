"""The support Gram K_S = A_S A_Sᵀ on ResNet20's real gradients: three ways to compute it.

Every CHITA solve starts by computing K_S on its starting support (every CHITA++ stage too), and
WoodFisher computes one per λ it scores. This script builds A for ResNet20 (n = 1000 from the
shared training images), takes the global magnitude mask at each sparsity, and times, best of 3
each: the baseline (`index_select` on the kept indices of each (n, 32768) slice of A, then the
full product), the previous code (a boolean gather, then the full product) and the current
`LocalQuadratic.gram` (a boolean gather, then only the lower block triangle of K: 3/4 of the
flops). All three Grams must be equal to the bit.

    python benchmarks/gram_gather.py [--sparsities 0.0,0.3,0.5,0.7,0.9]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core.fisher import per_sample_gradients  # noqa: E402
from core.methods.quadratic import BLOCK, LocalQuadratic  # noqa: E402
from core.methods.selection import global_budget, select  # noqa: E402
from core.pruning import default_layers  # noqa: E402


def gram_index_select(A: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The baseline: K_S with the kept columns of each slice gathered by index_select."""
    n, p = A.shape
    K = torch.zeros(n, n, dtype=torch.float64)
    for j in range(0, p, BLOCK):
        blk = A[:, j:j + BLOCK]
        idx = mask[j:j + BLOCK].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        if idx.numel() < blk.shape[1]:
            blk = blk.index_select(1, idx)
        K += (blk @ blk.T).double()
    return K


def gram_full_product(A: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The previous code: K_S with a boolean gather of the kept columns and the full product."""
    n, p = A.shape
    K = torch.zeros(n, n, dtype=torch.float64)
    for j in range(0, p, BLOCK):
        blk = A[:, j:j + BLOCK]
        keep = mask[j:j + BLOCK]
        if not bool(keep.any()):
            continue
        if not bool(keep.all()):
            blk = blk[:, keep]
        K += (blk @ blk.T).double()
    return K


def best_of(f, repeats: int = 3) -> tuple[float, torch.Tensor]:
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.0,0.3,0.5,0.7,0.9")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    model = loaded.model.eval()
    names = default_layers(model, "resnet20")
    x, y = bundle.calibration.x[:1000], bundle.calibration.y[:1000]
    gm = per_sample_gradients(model, x, y, names)
    A = gm.G.div_(math.sqrt(gm.G.shape[0]))
    params = dict(model.named_parameters())
    wbar = torch.cat([params[n].detach().reshape(-1) for n in names])
    quad = LocalQuadratic(A, wbar, 1.0)
    print(f"resnet20, A = {tuple(A.shape)} float32, {torch.get_num_threads()} threads, best of 3\n")
    print("| sparsity | kept columns | index_select, full product (baseline) s | boolean gather, "
          "full product (previous) s | boolean gather, lower triangle (current) s | current ÷ "
          "baseline | current ÷ previous | equal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in (float(v) for v in args.sparsities.split(",")):
        mask = select(wbar.abs(), global_budget(wbar.numel(), s), [slice(0, wbar.numel())])
        t_base, K_base = best_of(lambda: gram_index_select(A, mask))
        t_prev, K_prev = best_of(lambda: gram_full_product(A, mask))
        t_new, K_new = best_of(lambda: quad.gram(mask))
        equal = torch.equal(K_base, K_new) and torch.equal(K_prev, K_new)
        print(f"| {s} | {int(mask.sum()):,} | {t_base:.2f} | {t_prev:.2f} | {t_new:.2f} | "
              f"{t_new / t_base:.2f}× | {t_new / t_prev:.2f}× | {'yes' if equal else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
