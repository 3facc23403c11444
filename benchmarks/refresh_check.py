"""The refresh check before pruning at two sizes: its decisions and its seconds.

Every ResNet20 run first checks its stored BatchNorm statistics: it refreshes them on
calibration images as they are and cropped and mirrored, scores all three on held-out images,
picks the kind of images every later recalibration takes and refreshes before pruning only when
that lowers held-out loss by more than ``REFRESH_MARGIN``. The baseline is the check as it was
(512 refresh images, all 500 held-out images); the other row is ``core.pruning.REFRESH_CHECK``
(256 and 256). Both run in the same process on each calibration seed, alternating, and the table
gives the losses relative to the stored statistics', the decision, and the check's seconds.

    python benchmarks/refresh_check.py [--seeds 0,1,...,7] [--repeat 3]
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


def check(loaded, bundle, seed: int, size: int) -> tuple[dict, float]:
    """(what the check decided, its seconds) for calibration seed ``seed`` at ``size`` images."""
    saved, pruning.REFRESH_CHECK = pruning.REFRESH_CHECK, size
    try:
        ctx = pruning._Context.build(loaded.model, bundle.calibration,
                                     pruning.PruneRequest(method="magnitude", seed=seed),
                                     "resnet20", None, None)
    finally:
        pruning.REFRESH_CHECK = saved
    return ctx.info, ctx.timings_shared["batchnorm_before"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--repeat", type=int, default=3, help="timed checks per seed and size")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    sizes = {"512 / 500 (baseline)": 512, f"{pruning.REFRESH_CHECK} / {pruning.REFRESH_CHECK}":
             pruning.REFRESH_CHECK}
    print("ResNet20 refresh check per calibration seed: refresh images / held-out images; losses "
          "÷ the stored statistics' loss; seconds = best of "
          f"{args.repeat}, the two sizes alternating\n")
    print("| seed | size | as they are ÷ stored | crop+flip ÷ stored | chosen | refreshed | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    best: dict[str, list[float]] = {k: [] for k in sizes}
    same = 0
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        runs: dict[str, list[tuple[dict, float]]] = {k: [] for k in sizes}
        for _ in range(max(1, args.repeat)):
            for label, size in sizes.items():
                runs[label].append(check(loaded, bundle, seed, size))
        decisions = set()
        for label, rs in runs.items():
            info, secs = rs[0][0], min(s for _, s in rs)
            best[label].append(secs)
            L = info["bn_refresh_losses"]
            decisions.add((info["bn_augment"], info["bn_refreshed_before"]))
            print(f"| {seed} | {label} | {L['none'] / L['stored']:.3f} | "
                  f"{L['crop_flip'] / L['stored']:.3f} | {info['bn_augment']} | "
                  f"{'yes' if info['bn_refreshed_before'] else 'no'} | {secs:.2f} |", flush=True)
        same += len(decisions) == 1
    base, new = (statistics.mean(v) for v in best.values())
    print(f"\nSame decision at both sizes on {same} of {len(seeds)} seeds. Mean seconds: baseline "
          f"{base:.2f}, {list(sizes)[1]} {new:.2f} ({new / base:.2f}× the baseline).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
