"""Does single-stage CHITA with BatchNorm recalibration beat magnitude+recal given more gradient rows?

With n = 1000 rows and 27,000–134,000 kept weights, the backsolve absorbs the data term and
CHITA's mask is 97–99% magnitude's: with recalibration it is level with magnitude on ResNet20
(docs/benchmarks.md, "Targets of issue 7"). This script gives CHITA n = 1000 and more rows and
compares each with magnitude+recal on the same calibration sample.

The last ``--validation`` calibration images are held back from the engine (a fixed set, the
same for every n and seed), so the rows can grow without eating the images that judge them.
The engine gets the rest: the seed reshuffles which of them give G, which 500 are held out for
λ and which give BatchNorm's statistics. Each run is scored on those validation images (training
images no run saw) and on the test images; Δ is paired by seed against magnitude+recal.

    python benchmarks/more_rows.py [--rows 1000,3000] [--seeds 0,1,2,3,4]
                                   [--sparsities 0.7,0.8,0.9] [--validation 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import shared_or_exit  # noqa: E402

from core.evaluate import evaluate  # noqa: E402
from core.pruning import HOLDOUT, PruneRequest, apply_result, prune  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1000,3000", help="n values for CHITA (magnitude takes none)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--validation", type=int, default=1000,
                    help="calibration images held back from the engine to judge the runs")
    args = ap.parse_args()
    rows = [int(v) for v in args.rows.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    sparsities = [float(v) for v in args.sparsities.split(",")]
    loaded, bundle = shared_or_exit("resnet20")
    cal = bundle.calibration
    cut = len(cal.x) - args.validation
    if cut - max(rows) < HOLDOUT:
        ap.error(f"{len(cal.x)} calibration images hold at most {cut - HOLDOUT} rows beside "
                 f"{args.validation} validation and {HOLDOUT} held-out images")
    validation = replace(cal, x=cal.x[cut:], y=cal.y[cut:])
    engine = replace(cal, x=cal.x[:cut], y=cal.y[:cut])
    print(f"resnet20, BatchNorm recalibration on, {len(engine.x)} calibration images for the engine, "
          f"{len(validation.x)} held back for validation, {len(bundle.evaluation.y)} test images; "
          f"seeds {args.seeds}\n")
    print("| method | n | sparsity | validation % per seed | validation mean | Δ validation | "
          "test % per seed | test mean | Δ test | seconds (mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in sparsities:
        base_v: list[float] = []
        base_t: list[float] = []
        for method, n in [("magnitude", 1000)] + [("chita", n) for n in rows]:
            vals, tests, secs = [], [], []
            for seed in seeds:
                req = PruneRequest(method=method, sparsity=s, samples=n, seed=seed, recalibrate_bn=True)
                t0 = time.perf_counter()
                res = prune(loaded.model, engine, req, arch="resnet20")
                secs.append(time.perf_counter() - t0)
                net = apply_result(loaded.model, res)
                vals.append(100 * evaluate(net, validation).accuracy)
                tests.append(100 * evaluate(net, bundle.evaluation).accuracy)
            if method == "magnitude":
                base_v, base_t = vals, tests
                dv = dt = "—"
            else:
                dv = f"{statistics.mean(a - b for a, b in zip(vals, base_v)):+.2f}"
                dt = f"{statistics.mean(a - b for a, b in zip(tests, base_t)):+.2f}"
            print(f"| {method} | {n if method != 'magnitude' else '—'} | {s} | "
                  f"{' / '.join(f'{v:.2f}' for v in vals)} | {statistics.mean(vals):.2f} | {dv} | "
                  f"{' / '.join(f'{v:.2f}' for v in tests)} | {statistics.mean(tests):.2f} | {dt} | "
                  f"{statistics.mean(secs):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
