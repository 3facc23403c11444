"""Which held-out score, and which search over the λ grid, picks the λ that generalises?

Single-stage CHITA chooses λ by the held-out calibration loss of backsolves on the magnitude
support. At high sparsity without BatchNorm recalibration the network is broken (held-out loss
5–12) and the loss is dominated by a few confident mistakes. This script scores every λ of the
grid, plus magnitude pruning itself (λ → ∞, no update), with three criteria on the run's 500
held-out images:

- ``loss``: mean cross-entropy (the engine's criterion);
- ``ts-loss``: mean cross-entropy of the logits divided by the temperature T that minimises it
  (the loss of the best rescaling of the logits: it judges how the classes are ranked, not how
  confident the network is);
- ``error``: the held-out error rate.

and two ways of searching the grid: the engine's walk (start at 10⁻²·f̄, step downhill, stop
when the score rises: :func:`core.grid_walk.walk_grid`) and a full scan, with or without
magnitude as an eleventh candidate. Each rule's pick is judged on the *validation* images:
calibration (training) images that are neither G's nor held out (nor, with --recalibrate,
used for BatchNorm statistics), never test images. The test accuracy of each pick is printed
beside it, for the record only: nothing here is chosen on it.

With ``--recalibrate`` every candidate is scored as the engine scores it when BatchNorm is
recalibrated (statistics from 512 calibration images before the held-out pass), and judged
after a recalibration on the run's 2000 BatchNorm images, as the engine's result would be.

    python benchmarks/holdout_criteria.py [--model resnet20] [--sparsities 0.7,0.8,0.9]
        [--seeds 0,1,2,3,4] [--recalibrate]
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, load_shared, unused_calibration  # noqa: E402

from core.batchnorm import recalibrate_batchnorm  # noqa: E402
from core.evaluate import set_eval_mode  # noqa: E402
from core.grid_walk import walk_grid  # noqa: E402
from core.methods.chita import support_state, support_weights  # noqa: E402
from core.methods.selection import global_budget, select  # noqa: E402
from core.pruning import (  # noqa: E402
    LAMBDA_GRID,
    LAMBDA_START,
    RECAL_CHECK,
    PruneRequest,
    _Context,
    _flat,
    _write,
)


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The model's logits on ``x`` in eval mode."""
    set_eval_mode(model)
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def ts_loss(z: torch.Tensor, y: torch.Tensor) -> float:
    """min over T > 0 of the mean cross-entropy of z / T (golden section on log T ∈ [−4, 6])."""
    def f(t: float) -> float:
        return float(F.cross_entropy(z / math.exp(t), y))
    a, b = -4.0, 6.0
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(40):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return min(fc, fd, f(0.0))


def scores(z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The three criteria on held-out logits ``z`` (lower is better for all)."""
    return {"loss": float(F.cross_entropy(z, y)), "ts-loss": ts_loss(z, y),
            "error": float((z.argmax(1) != y).float().mean())}


RULES = ("walk, loss (engine)", "scan, loss", "scan + magnitude, loss", "walk, ts-loss",
         "scan + magnitude, ts-loss", "scan + magnitude, error", "magnitude", "validation oracle")


def pick(rule: str, rows: list[tuple[str, dict[str, float], float, float]]) -> int:
    """The index into ``rows`` (magnitude first, then the λ grid large → small) that ``rule``
    picks. Ties go to the earlier row: the larger λ, the smaller step."""
    if rule == "magnitude":
        return 0
    if rule == "validation oracle":
        return max(range(len(rows)), key=lambda i: (rows[i][2], -i))
    crit = rule.split(", ")[1].split(" ")[0]
    if rule.startswith("walk"):
        return 1 + walk_grid(lambda i: rows[1 + i][1][crit], len(rows) - 1, LAMBDA_START)
    first = 0 if "magnitude" in rule else 1
    return min(range(first, len(rows)), key=lambda i: (rows[i][1][crit], i))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=sorted(SETUPS))
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--recalibrate", action="store_true",
                    help="score and judge each candidate after BatchNorm recalibration, as the engine does")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = [float(v) for v in args.sparsities.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    t_start = time.perf_counter()
    # chosen[rule][sparsity] -> (validation %, test %) per seed
    chosen: dict[str, dict[float, list[tuple[float, float]]]] = {r: {s: [] for s in sparsities} for r in RULES}
    recal = "after BatchNorm recalibration" if args.recalibrate else "no BatchNorm recalibration"
    print(f"{args.model}: single-stage CHITA's λ candidates (backsolves on the magnitude support) and "
          f"magnitude itself (λ = ∞), {recal}.\n")
    print("| sparsity | seed | candidate | held-out loss | held-out ts-loss | held-out error % | "
          "validation % | test % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in seeds:
        req = PruneRequest(method="chita", sparsity=sparsities[0], recalibrate_bn=args.recalibrate,
                           seed=seed)
        ctx = _Context.build(loaded.model, bundle.calibration, req, args.model, None, None)
        A = ctx.gradients(ctx.base, {})
        wbar = _flat(ctx.base, ctx.names)
        unused = unused_calibration(bundle.calibration, seed, len(ctx.x_g), len(ctx.x_h), ctx.recal)
        x_v, y_v = unused.x, unused.y
        grid = [g * ctx.fbar for g in LAMBDA_GRID]
        for s in sparsities:
            mask = select(wbar.abs(), global_budget(ctx.p, s), ctx.groups)
            start = support_state(A, wbar, mask, grid[0])
            cands = {"magnitude (λ = ∞)": torch.where(mask, wbar, torch.zeros_like(wbar))}
            for g, lam in zip(LAMBDA_GRID, grid):
                cands[f"λ = {g:g}·f̄"] = support_weights(A, wbar, start, lam)
            rows = []
            for name, w in cands.items():
                trial = copy.deepcopy(ctx.base)
                _write(trial, ctx.names, w)
                if ctx.recal:  # as the engine scores a λ: statistics from 512 images
                    recalibrate_batchnorm(trial, ctx.bn_images[:RECAL_CHECK])
                sc = scores(logits_of(trial, ctx.x_h), ctx.y_h)
                if ctx.recal:  # as the engine's result: statistics from its 2000 BatchNorm images
                    recalibrate_batchnorm(trial, ctx.bn_images)
                val = 100 * float((logits_of(trial, x_v).argmax(1) == y_v).float().mean())
                test = 100 * float((logits_of(trial, bundle.evaluation.x).argmax(1)
                                    == bundle.evaluation.y).float().mean())
                rows.append((name, sc, val, test))
                print(f"| {s} | {seed} | {name} | {sc['loss']:.4f} | {sc['ts-loss']:.4f} | "
                      f"{100 * sc['error']:.1f} | {val:.2f} | {test:.2f} |", flush=True)
            for rule in RULES:
                i = pick(rule, rows)
                chosen[rule][s].append((rows[i][2], rows[i][3]))
    print(f"\nValidation: {len(x_v)} calibration images neither in G nor held out"
          f"{' nor used for BatchNorm statistics' if args.recalibrate else ''}. "
          "Each rule's pick, mean over seeds:\n")
    print("| rule | sparsity | validation % | Δ vs engine | test % (record only) | test % per seed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in sparsities:
        base = sum(v for v, _ in chosen[RULES[0]][s]) / len(seeds)
        for rule in RULES:
            per = chosen[rule][s]
            v = sum(a for a, _ in per) / len(per)
            t = sum(b for _, b in per) / len(per)
            print(f"| {rule} | {s} | {v:.2f} | {v - base:+.2f} | {t:.2f} | "
                  f"{' / '.join(f'{b:.2f}' for _, b in per)} |")
    print(f"\n{time.perf_counter() - t_start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
