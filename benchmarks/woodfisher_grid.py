"""WoodFisher's λ walk: one pass over G for the whole λ grid against one pass per λ.

The walk solves WoodFisher at every λ it scores (3–7 of the 10). The baseline, as the code had it,
recomputed the eigendecomposition of K = AAᵀ, the projection of all p columns of A and the
backsolve Gram K_S from scratch at each λ; now diag(F_λ⁻¹) for the whole grid comes from one
projection pass and each λ's backsolve is a rank update of the previous one's. This runs the
engine's WoodFisher on the shared checkpoints (n = 1000), takes the λ it scored, and times both
ways of solving at exactly those λ (held-out passes excluded: they are the same for both), and
checks that both give the same masks and weights. Last, a WoodFisher sweep over the same
sparsities with one G (`prune_path`), which also shares K and the diagonals between its points,
against the sum of the separate runs.

    python benchmarks/woodfisher_grid.py [--models resnet20,mlpnet] [--sparsities 0.5,0.7,0.8,0.9]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core import pruning  # noqa: E402
from core.methods.quadratic import BLOCK, LocalQuadratic  # noqa: E402
from core.methods.selection import select  # noqa: E402
from core.methods.woodfisher import inverse_fisher_diagonals, woodfisher_solve  # noqa: E402


def baseline_solve(A, wbar, k, groups, lam, K):
    """The baseline: eigh(K), a projection pass over A and K_S from scratch, at one λ."""
    quad = LocalQuadratic(A, wbar, lam)
    evals, V = torch.linalg.eigh(K)
    inv = 1.0 / (evals.clamp_min(0.0) + lam)
    V32 = V.T.to(torch.float32).contiguous()
    q = torch.empty(quad.p, dtype=torch.float64)
    for j in range(0, quad.p, BLOCK):
        B = (V32 @ A[:, j:j + BLOCK]).double()
        q[j:j + BLOCK] = (B * B * inv[:, None]).sum(0)
    finv = (1.0 - q).clamp_min(1e-12) / lam
    mask = select(quad.wbar.double() ** 2 / (2.0 * finv), k, groups)
    return quad.weights(quad.state(mask)), mask


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet20,mlpnet")
    ap.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    args = ap.parse_args()
    print("| model | sparsity | λ scored | baseline: per λ (s) | one grid pass + rank updates (s) | "
          "ratio | same masks | max abs weight diff | whole WoodFisher run (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    sweeps = []
    sparsities = [float(v) for v in args.sparsities.split(",")]
    for arch in args.models.split(","):
        shared = load_shared(arch)
        if shared is None:
            return 2
        loaded, bundle = shared
        separate = 0.0
        for s in sparsities:
            req = pruning.PruneRequest(method="woodfisher", sparsity=s, recalibrate_bn=False)
            t0 = time.perf_counter()
            res = pruning.prune(loaded.model, bundle.calibration, req, arch=arch)
            whole = time.perf_counter() - t0
            separate += whole
            sel = res.info["lambda_selection"][0]
            scored = [i for i, v in enumerate(sel["holdout_loss"]) if v is not None]
            grid = sel["grid"]
            ctx = pruning._Context.build(loaded.model, bundle.calibration, req, arch, None, None)
            work = copy.deepcopy(ctx.base)
            ctx.gradients(work, {})
            A, wbar = ctx.A, pruning._flat(work, ctx.names)
            k = pruning.global_budget(ctx.p, s)
            K = LocalQuadratic(A, wbar, 1.0).gram()
            t0 = time.perf_counter()
            old = [baseline_solve(A, wbar, k, ctx.groups, grid[i], K) for i in scored]
            t_old = time.perf_counter() - t0
            t0 = time.perf_counter()
            finv = inverse_fisher_diagonals(A, K, grid)
            new, warm = [], None
            for i in scored:
                sol = woodfisher_solve(A, wbar, k, ctx.groups, grid[i], K=K, finv=finv[i], warm=warm)
                warm = sol.state
                new.append((sol.weights, sol.mask))
            t_new = time.perf_counter() - t0
            same = all(torch.equal(a[1], b[1]) for a, b in zip(old, new))
            diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(old, new))
            print(f"| {arch} | {s} | {len(scored)} | {t_old:.2f} | {t_new:.2f} | {t_new / t_old:.2f}× | "
                  f"{'yes' if same else 'no'} | {diff:.1e} | {whole:.1f} |", flush=True)
        req = pruning.PruneRequest(method="woodfisher", recalibrate_bn=False)
        t0 = time.perf_counter()
        pruning.prune_path(loaded.model, bundle.calibration, req, sparsities, arch=arch)
        sweeps.append((arch, time.perf_counter() - t0, separate))
    print("\n| model | WoodFisher sweep, one G (s) | separate runs (s) | ratio |")
    print("| --- | --- | --- | --- |")
    for arch, sweep, separate in sweeps:
        print(f"| {arch} | {sweep:.1f} | {separate:.1f} | {sweep / separate:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
