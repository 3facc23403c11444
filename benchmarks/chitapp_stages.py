"""Stage by stage through one CHITA++ run: λ chosen, held-out loss, mask search, final decision.

For each calibration seed: every stage's sparsity, the λ the walk chose (as a power of ten of the
mean Fisher diagonal, the grid's unit) and its grid index, the held-out calibration loss of the
chosen backsolve (after a recalibration on the last stage only, as the engine scores it), the
held-out images the walk scored, the mask search's swap steps and its objective against its
start (the magnitude backsolve); then the final recalibration decision and the accuracy on the
test images and on the validation images (calibration images the run did not use).

    python benchmarks/chitapp_stages.py [--model resnet20] [--sparsity 0.9] [--seeds 1,2]
                                        [--no-recalibrate-bn]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared, validation_images  # noqa: E402

from core import pruning  # noqa: E402
from core.evaluate import evaluate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--no-recalibrate-bn", action="store_true")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    recal = None if not args.no_recalibrate_bn else False
    for seed in (int(s) for s in args.seeds.split(",")):
        req = pruning.PruneRequest(method="chita++", sparsity=args.sparsity, seed=seed,
                                   recalibrate_bn=recal)
        t0 = time.perf_counter()
        res = pruning.prune(loaded.model, bundle.calibration, req, arch=args.model)
        seconds = time.perf_counter() - t0
        pruned = pruning.apply_result(loaded.model, res)
        test = 100 * evaluate(pruned, bundle.evaluation).accuracy
        val = 100 * evaluate(pruned, validation_images(bundle.calibration, seed, res)).accuracy
        print(f"\n{args.model}, CHITA++ at {args.sparsity}, seed {seed}, "
              f"{len(res.info['schedule'])} stages, {seconds:.0f} s: test {test:.2f}%, "
              f"validation {val:.2f}%\n")
        print("| stage | sparsity | λ ÷ mean Fisher diagonal (grid index) | held-out loss | "
              "held-out images scored | swap steps | objective ÷ start |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for t, (ls, sv) in enumerate(zip(res.info["lambda_selection"], res.info["solver"]), 1):
            i = ls["grid"].index(ls["chosen"])
            unit = pruning.LAMBDA_GRID[i]
            print(f"| {t} | {ls['sparsity']:.4f} | 1e{round(math.log10(unit)):+d} ({i}) | "
                  f"{ls['holdout_loss'][i]:.4f} | {sum(ls['holdout_images'])} | {sv['swaps']} | "
                  f"{sv['objective'] / sv['start_objective']:.3f} |")
        dec = res.info.get("recalibration")
        if dec:
            print(f"\nFinal recalibration: held-out loss {dec['holdout_loss_before']:.4f} → "
                  f"{dec['holdout_loss_after']:.4f}, {'applied' if dec['applied'] else 'declined'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
