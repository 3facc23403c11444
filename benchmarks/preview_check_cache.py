"""The live magnitude preview on ResNet20 with and without the kept BatchNorm check decision.

Every run on a network with BatchNorm first checks its stored statistics (a refresh on
calibration images as they are and cropped and mirrored, scored on held-out images). The GUI's
live magnitude preview runs on every slider release, and the check gives the same answer every
time for the same model, images, seed and sample. The baseline runs the preview job as it was
(``gui.jobs.magnitude_preview_job`` without a cache: the check each time); the current GUI passes
its ``GradientCache``, which keeps the decision after the first preview. Both alternate, at
several sparsities, with the BatchNorm recalibration after pruning off and on; the seconds are
whole preview jobs (magnitude masks, BatchNorm work, accuracy on the 846 test images).

    python benchmarks/preview_check_cache.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import shared_or_exit  # noqa: E402

from core.pruning import GradientCache  # noqa: E402
from gui.jobs import magnitude_preview_job  # noqa: E402

SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="passes over the sparsities")
    args = ap.parse_args()
    loaded, bundle = shared_or_exit("resnet20")
    print("ResNet20, magnitude preview jobs (masks, BatchNorm work, accuracy on 846 test images); "
          f"median over {args.repeat} passes of {len(SPARSITIES)} sparsities each\n")
    print("| recalibration after pruning | no cache: check every time (baseline) s | kept decision (current) s "
          "| ratio | same accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for recal in (False, None):
        cache = GradientCache()
        magnitude_preview_job(loaded.model, bundle, SPARSITIES[0], arch="resnet20", recalibrate_bn=recal,
                              cache=cache)  # the first preview: checks and keeps the decision
        base, cur, same = [], [], True
        for _ in range(args.repeat):
            for s in SPARSITIES:
                t0 = time.perf_counter()
                a = magnitude_preview_job(loaded.model, bundle, s, arch="resnet20", recalibrate_bn=recal)
                base.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                b = magnitude_preview_job(loaded.model, bundle, s, arch="resnet20", recalibrate_bn=recal,
                                          cache=cache)
                cur.append(time.perf_counter() - t0)
                same &= a.eval.accuracy == b.eval.accuracy and bool(b.result.info.get("bn_check_reused"))
        mb, mc = statistics.median(base), statistics.median(cur)
        label = "off" if recal is False else "on (default)"
        print(f"| {label} | {mb:.2f} | {mc:.2f} | {mc / mb:.2f}× | {'yes' if same else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
