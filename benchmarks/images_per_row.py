"""What mini-batch-averaged gradient rows (``PruneRequest.images_per_row``) buy, per method.

Every row keeps n = 1000 gradient rows and changes only B, the calibration images averaged into
each row: the Fisher then comes from n·B training images at the solver cost of n rows
(core/fisher.py: ``fisher_factor``). The first B of ``--per-row`` is the baseline, measured in
the same run on the same seeds; Δ is the paired mean difference. Accuracy on the shared test
images, never used to choose anything. B is lowered to what the calibration set holds beside
the 500 held-out images (MNIST 14,262 images: B ≤ 13; CIFAR-10 4,660: B ≤ 4).

    python benchmarks/images_per_row.py [--model mlpnet|resnet20] [--methods chita,chita++]
                                        [--sparsities 0.9,0.95,0.98] [--seeds 0,1,2,3,4]
                                        [--per-row 1,13] [--refine 0] [--recalibrate-bn on|off]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refine import fmt_accuracy  # noqa: E402
from shared_models import SETUPS, load_shared  # noqa: E402

from core.evaluate import evaluate  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlpnet", choices=sorted(SETUPS))
    ap.add_argument("--methods", default="chita,chita++")
    ap.add_argument("--sparsities", default="0.9,0.95,0.98")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--per-row", default="1,13", help="values of B; the first is the baseline")
    ap.add_argument("--refine", type=int, default=0, help="refinement steps (default 0: one-shot)")
    ap.add_argument("--recalibrate-bn", choices=("on", "off"), default=None,
                    help="BatchNorm recalibration after pruning (default: the engine's, on for BatchNorm models)")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = [float(s) for s in args.sparsities.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    per_row = [int(b) for b in args.per_row.split(",")]
    recal = None if args.recalibrate_bn is None else args.recalibrate_bn == "on"
    print(f"{args.model}, n = 1000 gradient rows, accuracy % on {len(bundle.evaluation.y)} test "
          f"images ({'95% interval' if len(seeds) == 1 else f'mean ± sd over seeds {args.seeds}'}), "
          f"BatchNorm recalibration {args.recalibrate_bn or 'default'}, refinement steps "
          f"{args.refine}\n")
    print("| method | sparsity | B (images per row) | images | per seed | accuracy % | Δ vs B = "
          f"{per_row[0]} (paired) | seconds (mean) | time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        for s in sparsities:
            base_accs: list[float] = []
            base_secs = 0.0
            for b in per_row:
                accs, secs, used = [], [], 0
                for seed in seeds:
                    req = PruneRequest(method=method, sparsity=s, samples=1000, seed=seed,
                                       images_per_row=b, refine_steps=args.refine,
                                       recalibrate_bn=recal)
                    t0 = time.perf_counter()
                    res = prune(loaded.model, bundle.calibration, req, arch=args.model)
                    secs.append(time.perf_counter() - t0)
                    ev = evaluate(apply_result(loaded.model, res), bundle.evaluation)
                    accs.append(100 * ev.accuracy)
                    used = res.info["samples"] * int(res.info.get("images_per_row", 1))
                mean_s = statistics.mean(secs)
                if b == per_row[0]:
                    base_accs, base_secs = accs, mean_s
                    delta, ratio = "—", "1.00×"
                else:
                    delta = f"{statistics.mean(a - c for a, c in zip(accs, base_accs)):+.2f}"
                    ratio = f"{mean_s / base_secs:.2f}×"
                print(f"| {method} | {s} | {b} | {used} | {' / '.join(f'{a:.2f}' for a in accs)} | "
                      f"{fmt_accuracy(accs, ev.n)} | {delta} | "
                      f"{mean_s:.1f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
