"""How far is each CHITA solve from the best subset? A floor every run reports, beside its objective.

No support of k weights has an objective below L_k = (λ/2)·Σ of the p − k smallest w̄_j²
(``core.methods.chita.objective_lower_bound``; the data term ½‖A(w − w̄)‖² is never negative).
So for each solve, objective − L_k bounds how much lower the best subset could go, without a
brute-force search. The script runs the engine as the one-shot benchmark does (seed 0, n = 1000,
λ walked on held-out calibration images) and prints, per sparsity:

- the objective, the backsolve on the magnitude mask and the floor L_k, all at the chosen λ;
- **gap**: (objective − L_k) / objective, the most by which any mask of that size could beat
  this solve on the quadratic model;
- **closed**: (magnitude backsolve − objective) / (magnitude backsolve − L_k), the part of the
  room between the magnitude backsolve and the floor that the mask search took;
- the share of the magnitude mask kept, and the seconds of the run.

For CHITA++ the figures are those of its last stage, whose quadratic is centred at the previous
stage's weights.

    python benchmarks/optimality_gap.py [--model mlpnet|resnet20] [--methods chita,chita++]
                                        [--sparsities ...] [--recalibrate-bn both|on|off]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import shared_or_exit  # noqa: E402

from core.pruning import PruneRequest, prune  # noqa: E402

DEFAULTS = {"mlpnet": ("0.5,0.7,0.9,0.95,0.98", "chita,chita++"),
            "resnet20": ("0.5,0.7,0.8,0.9", "chita")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlpnet", choices=sorted(DEFAULTS))
    ap.add_argument("--methods", default=None, help="default: chita,chita++ (MLPNet), chita (ResNet20)")
    ap.add_argument("--sparsities", default=None)
    ap.add_argument("--recalibrate-bn", default="both", choices=["both", "on", "off"],
                    help="ResNet20: recalibrate BatchNorm after pruning, not, or both (default)")
    args = ap.parse_args()
    sps_default, methods_default = DEFAULTS[args.model]
    sparsities = [float(v) for v in (args.sparsities or sps_default).split(",")]
    methods = (args.methods or methods_default).split(",")
    recals: list[bool | None] = [None]
    if args.model == "resnet20":
        recals = {"both": [False, True], "on": [True], "off": [False]}[args.recalibrate_bn]
    loaded, bundle = shared_or_exit(args.model)

    print(f"{args.model}, seed 0, n = 1000, λ chosen on held-out calibration images; "
          "objective, magnitude backsolve and floor at that λ\n")
    print("| method | recal | sparsity | λ | objective | magnitude backsolve | floor L_k | gap | closed | "
          "magnitude mask kept | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in methods:
        for recal in recals:
            for s in sparsities:
                req = PruneRequest(method=method, sparsity=s, samples=1000, recalibrate_bn=recal)
                t0 = time.perf_counter()
                res = prune(loaded.model, bundle.calibration, req, arch=args.model)
                secs = time.perf_counter() - t0
                fin = res.info["final"][-1]
                obj, mag, floor = fin["objective"], fin["magnitude_objective"], fin["objective_lower_bound"]
                gap = (obj - floor) / obj
                closed = (mag - obj) / (mag - floor) if mag > floor else float("nan")
                label = method if method != "chita++" else f"chita++ ({len(res.info['schedule'])} stages)"
                recal_s = "—" if recal is None else ("yes" if recal else "no")
                print(f"| {label} | {recal_s} | {s} | {fin['lam']:.3g} | {obj:.6g} | {mag:.6g} | "
                      f"{floor:.6g} | {100 * gap:.2f}% | {100 * closed:.0f}% | "
                      f"{100 * fin['magnitude_mask_kept']:.1f}% | {secs:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
