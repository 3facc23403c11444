"""Does CHITA's mask search help on held-out data, or only on the quadratic model?

For each calibration seed, a single-stage CHITA run on ResNet20 (no recalibration after pruning)
is taken apart at its chosen λ: the backsolve on the starting (magnitude) support, which the λ
walk scored, against the mask search's final weights. Both are scored on the 500 held-out
training images the run chose λ on and on the test images. A rule "keep the mask search only
when it lowers held-out loss" can be read off the table; it is a diagnostic, not in the engine.

    python benchmarks/mask_search_holdout.py [--sparsities 0.8,0.9] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core import pruning  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.methods.chita import support_state, support_weights  # noqa: E402
from core.methods.selection import select  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared

    seen: dict = {}
    solve = pruning._Context._chita

    def recording(self, work, A, wbar, k, grid, info, sparsity, label):
        """The engine's own step, plus the start-support backsolve at the λ it chose."""
        w, mask, trace, lam = solve(self, work, A, wbar, k, grid, info, sparsity, label)
        start = support_state(A, wbar, select(wbar.abs(), k, self.groups), lam)
        w_start = support_weights(A, wbar, start, lam)
        seen.update(names=self.names, start=w_start, start_loss=self._holdout_loss(work, w_start),
                    final_loss=self._holdout_loss(work, w))
        return w, mask, trace, lam

    print("ResNet20, single-stage CHITA, n = 1000, no recalibration after pruning; held-out: the "
          "500 training images λ was chosen on; test: the 846 test images\n")
    print("| sparsity | seed | held-out loss, start backsolve | held-out loss, mask search | "
          "test %, start backsolve | test %, mask search | lower held-out loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    pruning._Context._chita = recording
    try:
        for s in (float(v) for v in args.sparsities.split(",")):
            final_acc, guarded_acc = [], []
            for seed in (int(v) for v in args.seeds.split(",")):
                req = pruning.PruneRequest(method="chita", sparsity=s, seed=seed, recalibrate_bn=False)
                res = pruning.prune(loaded.model, bundle.calibration, req, arch="resnet20")
                model = pruning.apply_result(loaded.model, res)
                acc_final = 100 * evaluate(model, bundle.evaluation).accuracy
                pruning._write(model, seen["names"], seen["start"])
                acc_start = 100 * evaluate(model, bundle.evaluation).accuracy
                keep_start = seen["start_loss"] < seen["final_loss"]
                final_acc.append(acc_final)
                guarded_acc.append(acc_start if keep_start else acc_final)
                print(f"| {s} | {seed} | {seen['start_loss']:.3f} | {seen['final_loss']:.3f} | "
                      f"{acc_start:.2f} | {acc_final:.2f} | {'start' if keep_start else 'mask search'} |",
                      flush=True)
            print(f"| {s} | mean | | | | {statistics.mean(final_acc):.2f} | "
                  f"rule: {statistics.mean(guarded_acc):.2f} |")
    finally:
        pruning._Context._chita = solve
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
