"""The weight update taken whole (α = 1) or scaled by an α chosen on held-out error.

Without BatchNorm recalibration the engine moves the kept weights by α·(w − w̄), α walked from 1
down ``core.pruning.UPDATE_SCALES`` while the error on the 500 held-out calibration images falls,
with ``PruneRequest.update_scale=None`` (an option; the default α = 1 is the papers' algorithms).
Single-stage CHITA and WoodFisher scale their one update; CHITA++ scales each stage's, except a
stage that a recalibration follows (its last, when BatchNorm is recalibrated).
This script runs every seed and sparsity both ways, paired, and prints the accuracy on the
run's *validation* images (calibration images the run used for nothing: judged without the test
set) and on the test images, the α chosen and the seconds.

    python benchmarks/update_scale.py [--model resnet20|mlpnet] [--sparsities 0.5,0.7,0.8,0.9]
                                      [--seeds 0,1,2,3,4] [--method chita|woodfisher|chita++]
                                      [--recalibrate-bn]
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
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared, validation_images  # noqa: E402

from core.evaluate import evaluate  # noqa: E402
from core.pruning import (  # noqa: E402
    METHOD_LABELS,
    UPDATE_SCALE_METHODS,
    PruneRequest,
    apply_result,
    prune,
)


def chosen_alpha(info: dict) -> float:
    """The α a run took; for CHITA++ the mean over its stages."""
    stages = info.get("update_scale_stages")
    if stages:
        return sum(float(r["chosen"]) for r in stages) / len(stages)
    return float(info.get("update_scale", {}).get("chosen", 1.0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=("resnet20", "mlpnet"))
    ap.add_argument("--sparsities", default=None, help="default: 0.5,0.7,0.8,0.9 (ResNet20), "
                    "0.5,0.7,0.9,0.95,0.98 (MLPNet)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--method", default="chita", choices=sorted(UPDATE_SCALE_METHODS))
    ap.add_argument("--recalibrate-bn", action="store_true",
                    help="recalibrate BatchNorm after pruning (then auto keeps α = 1, except at "
                    "CHITA++'s intermediate stages)")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = [float(s) for s in (args.sparsities or (
        "0.5,0.7,0.8,0.9" if args.model == "resnet20" else "0.5,0.7,0.9,0.95,0.98")).split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    recal = args.recalibrate_bn if args.model == "resnet20" else None
    print(f"{args.model}, {METHOD_LABELS[args.method]}, n = 1000, BatchNorm recalibration "
          f"{'on' if recal else 'off'}; validation: the run's unused calibration images; "
          f"test: {len(bundle.evaluation.y)} test images\n")
    print("| sparsity | seed | α chosen (CHITA++: mean over stages) | validation %, α = 1 | validation %, α chosen | Δ | "
          "test %, α = 1 | test %, α chosen | Δ | seconds, α = 1 | seconds, α chosen | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in sparsities:
        rows = []
        for seed in seeds:
            base = PruneRequest(method=args.method, sparsity=s, seed=seed, recalibrate_bn=recal)
            out = []
            for req in (replace(base, update_scale=1.0), replace(base, update_scale=None)):
                t0 = time.perf_counter()
                res = prune(loaded.model, bundle.calibration, req, arch=args.model)
                secs = time.perf_counter() - t0
                model = apply_result(loaded.model, res)
                val = 100 * evaluate(model, validation_images(bundle.calibration, seed, res)).accuracy
                test = 100 * evaluate(model, bundle.evaluation).accuracy
                out.append((val, test, secs, chosen_alpha(res.info)))
            (v1, t1, s1, _), (va, ta, sa, alpha) = out
            rows.append((v1, va, t1, ta, s1, sa, alpha))
            print(f"| {s} | {seed} | {alpha:.3g} | {v1:.2f} | {va:.2f} | {va - v1:+.2f} | {t1:.2f} | "
                  f"{ta:.2f} | {ta - t1:+.2f} | {s1:.1f} | {sa:.1f} | {sa / s1:.2f}× |", flush=True)
        m = [statistics.mean(c) for c in zip(*rows)]
        higher = sum(r[1] > r[0] for r in rows)
        lower = sum(r[1] < r[0] for r in rows)
        print(f"| {s} | mean | — | {m[0]:.2f} | {m[1]:.2f} | {m[1] - m[0]:+.2f} ({higher} up, {lower} down) | "
              f"{m[2]:.2f} | {m[3]:.2f} | {m[3] - m[2]:+.2f} | {m[4]:.1f} | {m[5]:.1f} | "
              f"{m[5] / m[4]:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
