"""Does held-out calibration loss tell a good one-shot CHITA solution from a bad one?

For ResNet20 single-stage CHITA without recalibration, over calibration seeds: the held-out loss
(the 500 held-out training images λ is chosen on) of magnitude pruning and of the CHITA result,
beside both test accuracies. A diagnostic for the idea of a "no weight update" candidate (λ → ∞,
which is magnitude pruning) in the λ walk; it reaches into `core.pruning._Context` to score the
same held-out images the run used.

    python benchmarks/holdout_guard.py [--sparsities 0.8,0.9] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core.evaluate import evaluate  # noqa: E402
from core.methods.selection import global_budget, select  # noqa: E402
from core.pruning import PruneRequest, _Context, _flat, apply_result, prune  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    print("ResNet20, single-stage CHITA, no recalibration after pruning; held-out loss on 500 training "
          "images, accuracy on the 846 test images\n")
    print("| sparsity | seed | held-out loss, magnitude | held-out loss, CHITA | test %, magnitude | "
          "test %, CHITA | lower held-out loss picks the better test accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in (float(v) for v in args.sparsities.split(",")):
        for seed in (int(v) for v in args.seeds.split(",")):
            req = PruneRequest(method="chita", sparsity=s, recalibrate_bn=False, seed=seed)
            res = prune(loaded.model, bundle.calibration, req, arch="resnet20")
            ctx = _Context.build(loaded.model, bundle.calibration, req, "resnet20", None, None)
            wbar = _flat(ctx.base, ctx.names)
            mask = select(wbar.abs(), global_budget(ctx.p, s), ctx.groups)
            w_mag = torch.where(mask, wbar, torch.zeros_like(wbar))
            w_chita = torch.cat([res.weights[n].reshape(-1) for n in ctx.names])
            loss_mag, loss_chita = ctx._holdout_loss(ctx.base, w_mag), ctx._holdout_loss(ctx.base, w_chita)
            mag_result = prune(loaded.model, bundle.calibration,
                               PruneRequest(method="magnitude", sparsity=s, recalibrate_bn=False, seed=seed),
                               arch="resnet20")
            acc_mag = 100 * evaluate(apply_result(loaded.model, mag_result), bundle.evaluation).accuracy
            acc_chita = 100 * evaluate(apply_result(loaded.model, res), bundle.evaluation).accuracy
            agree = (loss_chita < loss_mag) == (acc_chita > acc_mag)
            print(f"| {s} | {seed} | {loss_mag:.3f} | {loss_chita:.3f} | {acc_mag:.2f} | {acc_chita:.2f} | "
                  f"{'yes' if agree else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
