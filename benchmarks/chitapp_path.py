"""CHITA++ at several sparsities: one shared schedule with branches, against separate runs.

`prune_path(method="chita++")` runs the sparsest target's schedule once and branches every other
target off it for its closing stages (`core.pruning._Context.chitapp_path`). This script runs the
same targets both ways, per calibration sample (seed), and prints test accuracy (95% interval on
the first seed), the held-out calibration loss the run itself can see, seconds per target (a
separate run's wall time; on the path, a branch's own stages, and for the sparsest target the
main schedule it shares), and the ratio of the whole path's time to the separate runs' in the
same process. The sparsest target must come
out identical both ways; the script checks it.

    python benchmarks/chitapp_path.py [--model mlpnet] [--sparsities 0.5,0.7,0.9,0.95,0.98]
                                      [--seeds 0] [--recalibrate-bn]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, load_shared  # noqa: E402

from core.evaluate import evaluate  # noqa: E402
from core.pruning import PruneRequest, _Context, apply_result, prune, prune_path  # noqa: E402


def holdout_loss(model: torch.nn.Module, held_out: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean loss on the calibration images the run held out to choose λ (never test images)."""
    x, y = held_out
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlpnet", choices=sorted(SETUPS))
    ap.add_argument("--sparsities", default="0.5,0.7,0.9,0.95,0.98")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recalibrate-bn", action="store_true",
                    help="recalibrate BatchNorm after pruning (default: off)")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    model = loaded.model
    sparsities = sorted(float(s) for s in args.sparsities.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    n = 1000
    print(f"{args.model}, CHITA++ (automatic stages), n = {n}, accuracy on "
          f"{len(bundle.evaluation.y)} test images, BatchNorm recalibration "
          f"{'on' if args.recalibrate_bn else 'off'}, seeds {args.seeds}\n")
    rows: dict[tuple[float, str], list[tuple[float, float]]] = {}
    ci: dict[tuple[float, str], tuple[float, float]] = {}
    times: dict[str, list[float]] = {"separate": [], "path": []}
    secs: dict[tuple[float, str], list[float]] = {}
    for seed in seeds:
        req = PruneRequest(method="chita++", sparsity=sparsities[-1], samples=n, seed=seed,
                           recalibrate_bn=args.recalibrate_bn)
        ctx = _Context.build(model, bundle.calibration, req, args.model, None, None)
        held_out = (ctx.x_h, ctx.y_h)  # the engine's own split for this seed
        del ctx
        separate = []
        for s in sparsities:
            t0 = time.perf_counter()
            separate.append(prune(model, bundle.calibration, replace(req, sparsity=s), arch=args.model))
            secs.setdefault((s, "separate"), []).append(time.perf_counter() - t0)
        times["separate"].append(sum(secs[(s, "separate")][-1] for s in sparsities))
        t0 = time.perf_counter()
        path = prune_path(model, bundle.calibration, req, sparsities, arch=args.model)
        times["path"].append(time.perf_counter() - t0)
        same = all(torch.equal(path[-1].weights[k], separate[-1].weights[k]) for k in path[-1].weights)
        if not same:
            print(f"seed {seed}: the sparsest target differs between the path and its separate run")
            return 1
        for s, b in zip(sparsities, path):  # a branch's own stages; the sparsest: the main schedule
            secs.setdefault((s, "path"), []).append(b.timings["total"])
        for s, a, b in zip(sparsities, separate, path):
            for how, res in (("separate", a), ("path", b)):
                pruned = apply_result(model, res)
                ev = evaluate(pruned, bundle.evaluation)
                rows.setdefault((s, how), []).append(
                    (100 * ev.accuracy, holdout_loss(pruned, held_out)))
                ci.setdefault((s, how), tuple(100 * c for c in ev.accuracy_ci))
        print(f"seed {seed}: separate {times['separate'][-1]:.1f} s, path {times['path'][-1]:.1f} s",
              file=sys.stderr, flush=True)

    print(f"| sparsity | how | test % per seed (seed {seeds[0]}: 95% interval) | mean test % | "
          "mean held-out loss | path − separate, test (mean) | seconds (mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in sparsities:
        base = statistics.mean(a for a, _ in rows[(s, "separate")])
        for how in ("separate", "path"):
            vals = rows[(s, how)]
            lo, hi = ci[(s, how)]
            per_seed = " / ".join(f"{a:.2f}" for a, _ in vals) + f" [{lo:.2f}, {hi:.2f}]"
            mean = statistics.mean(a for a, _ in vals)
            diff = "—" if how == "separate" else f"{mean - base:+.2f}"
            print(f"| {s} | {how} | {per_seed} | {mean:.2f} | "
                  f"{statistics.mean(l for _, l in vals):.4f} | {diff} | "
                  f"{statistics.mean(secs[(s, how)]):.1f} |")
    sep, pth = sum(times["separate"]), sum(times["path"])
    print(f"\n| seconds (all seeds) | separate runs | shared path | ratio |\n| --- | --- | --- | --- |\n"
          f"| {len(sparsities)} targets × {len(seeds)} seeds | {sep:.1f} | {pth:.1f} | {pth / sep:.2f}× |")
    print(f"\nThe sparsest target ({sparsities[-1]}) is identical both ways on every seed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
