"""Is the paper's isotropic ridge the right one? Backsolves under shaped ridges, ResNet20.

CHITA's ridge (nλ/2)‖w − w̄‖² treats every weight alike. With n = 1000 ≪ p the empirical Fisher
F = AᵀA has rank n, and the ridge decides how far the update moves where the data are silent.
This script replaces it by (nλ/2)(w − w̄)ᵀD(w − w̄) with D diagonal (mean 1), solved exactly as
the isotropic one after the change of variables u = D^½ w (A → A D^−½, w̄ → D^½ w̄), and backsolves
on the magnitude mask (the mask every ResNet20 CHITA run keeps 97–99.8% of) over the engine's
λ grid, without BatchNorm recalibration. Ridges (``--ridges``):

- ``iso``: D = I, the paper's ridge and the engine's;
- ``elem:γ``: D_jj ∝ (F_jj/f̄ + 10⁻³)^γ: γ = 1 shrinks the Fisher towards its own diagonal (the
  Ledoit–Wolf-style target for a covariance estimated from n ≪ p samples), γ < 0 holds back the
  weights the data say least about;
- ``layer:γ``: D constant within a layer, ∝ (the layer's mean F_jj)^γ: γ = 1 makes the ridge
  blind to a layer's weight scale, which BatchNorm leaves free.

Each candidate is scored on the run's 500 held-out images (the engine's walk over λ on the
held-out loss picks one per ridge) and judged on the calibration images no run uses (validation);
test accuracy is printed for the record only.

    python benchmarks/ridge_shape.py [--sparsities 0.7,0.8,0.9] [--seeds 0,1,2,3,4]
        [--ridges iso,elem:-0.5,layer:1,layer:-1]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from statistics import mean

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from holdout_criteria import logits_of  # noqa: E402
from shared_models import shared_or_exit, unused_calibration  # noqa: E402

from core.grid_walk import walk_grid  # noqa: E402
from core.methods.chita import support_state, support_weights  # noqa: E402
from core.methods.selection import global_budget, select  # noqa: E402
from core.pruning import (  # noqa: E402
    LAMBDA_GRID,
    LAMBDA_START,
    PruneRequest,
    _Context,
    _flat,
    _write,
)


def ridge_diagonal(spec: str, A: torch.Tensor, groups: list[slice]) -> torch.Tensor:
    """D (length p, mean 1) for a ridge named as in the module docstring."""
    fdiag = (A * A).sum(0)
    fdiag = fdiag / fdiag.mean()
    if spec == "iso":
        return torch.ones_like(fdiag)
    kind, gamma = spec.split(":")
    if kind == "elem":
        d = (fdiag + 1e-3) ** float(gamma)
    elif kind == "layer":
        d = torch.empty_like(fdiag)
        for g in groups:
            d[g] = float(fdiag[g].mean()) ** float(gamma)
    else:
        raise SystemExit(f"unknown ridge {spec!r}: use iso, elem:γ or layer:γ")
    return d / d.mean()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy % in eval mode."""
    return 100 * float((logits_of(model, x).argmax(1) == y).float().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--ridges", default="iso,elem:-0.5,layer:1,layer:-1")
    args = ap.parse_args()
    loaded, bundle = shared_or_exit("resnet20")
    sparsities = [float(v) for v in args.sparsities.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    ridges = args.ridges.split(",")
    t0 = time.perf_counter()
    # picked[(sparsity, ridge)] -> per seed (walk's validation %, walk's test %, λ factor, best validation %)
    picked: dict[tuple[float, str], list[tuple[float, float, float, float]]] = {}
    print("ResNet20, backsolves on the magnitude mask, no BatchNorm recalibration; λ = factor × f̄\n")
    print("| sparsity | seed | ridge | λ factor | held-out loss | validation % | test % |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for seed in seeds:
        req = PruneRequest(method="chita", sparsity=sparsities[0], recalibrate_bn=False, seed=seed)
        ctx = _Context.build(loaded.model, bundle.calibration, req, "resnet20", None, None)
        A = ctx.gradients(ctx.base, {})
        wbar = _flat(ctx.base, ctx.names)
        val = unused_calibration(bundle.calibration, seed, len(ctx.x_g), len(ctx.x_h), False)
        grid = [g * ctx.fbar for g in LAMBDA_GRID]
        for s in sparsities:
            mask = select(wbar.abs(), global_budget(ctx.p, s), ctx.groups)
            for ridge in ridges:
                scale = ridge_diagonal(ridge, A, ctx.groups).rsqrt()  # D^-½
                As, ws = A * scale, wbar / scale
                start = support_state(As, ws, mask, grid[0])
                rows = []
                for g, lam in zip(LAMBDA_GRID, grid):
                    trial = copy.deepcopy(ctx.base)
                    _write(trial, ctx.names, support_weights(As, ws, start, lam) * scale)
                    loss = float(F.cross_entropy(logits_of(trial, ctx.x_h), ctx.y_h))
                    v = accuracy(trial, val.x, val.y)
                    t = accuracy(trial, bundle.evaluation.x, bundle.evaluation.y)
                    rows.append((loss, v, t))
                    print(f"| {s} | {seed} | {ridge} | {g:g} | {loss:.4f} | {v:.2f} | {t:.2f} |", flush=True)
                i = walk_grid(lambda j: rows[j][0], len(rows), LAMBDA_START)
                picked.setdefault((s, ridge), []).append(
                    (rows[i][1], rows[i][2], LAMBDA_GRID[i], max(r[1] for r in rows)))
    print(f"\nValidation: {len(val.x)} calibration images neither in G nor held out. Per ridge, the λ the "
          "walk on held-out loss picks; 'best λ' is the best of the grid on validation (a ceiling). "
          f"Δ against iso, paired by seed, where iso was run. {time.perf_counter() - t0:.0f} s in all.\n")
    print("| sparsity | ridge | validation %, walk | Δ vs iso | validation % per seed | best λ: validation % "
          "| test %, walk (record only) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in sparsities:
        iso = picked.get((s, "iso"))
        for ridge in ridges:
            per = picked[(s, ridge)]
            v = mean(p[0] for p in per)
            delta = f"{v - mean(p[0] for p in iso):+.2f}" if iso and ridge != "iso" else "—"
            print(f"| {s} | {ridge} | {v:.2f} | {delta} | {' / '.join(f'{p[0]:.2f}' for p in per)} | "
                  f"{mean(p[3] for p in per):.2f} | {mean(p[1] for p in per):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
