"""BatchNorm statistics on the calibration images as they are, or cropped and mirrored.

ResNet20's checkpoint was trained on CIFAR-10 images cropped at random from a black-padded copy
and mirrored, so its stored BatchNorm statistics are those of augmented images. The first table
refreshes the *dense* network's statistics on 2,000 calibration images both ways (and on the
first 512, the size of the engine's refresh check until it took 256, see refresh_check.py) and
gives test accuracy and held-out loss. The
second prunes with BatchNorm recalibration on, with ``bn_augment="none"`` (the engine before
this option) and ``"auto"`` (the default: the refresh check picks the images on held-out loss),
per method, sparsity and calibration seed, and judges them on test images and on the
*validation* images (calibration images the run used for nothing). Δ is auto − none, paired by
seed.

    python benchmarks/bn_augment.py [--methods magnitude,chita] [--sparsities 0.5,0.7,0.8,0.9]
        [--seeds 0,1,2,3,4] [--recal on|off] [--refresh-seeds 0,1,...,7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared, validation_images  # noqa: E402

from core.augment import CropFlip  # noqa: E402
from core.batchnorm import recalibrate_batchnorm  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.pruning import PruneRequest, _Context, apply_result, prune  # noqa: E402


def dense_table(loaded, bundle) -> None:
    """Dense ResNet20 with its stored statistics and with statistics refreshed both ways."""
    ctx = _Context.build(loaded.model, bundle.calibration, PruneRequest(method="magnitude"),
                         "resnet20", None, None, refresh_bn=False)
    print("Dense ResNet20, BatchNorm statistics refreshed on calibration images (seed 0's order); "
          "held-out loss on the engine's 500 held-out images, accuracy % on the 846 test images\n")
    print("| statistics | images | held-out loss | test accuracy % [95% CI] |")
    print("| --- | --- | --- | --- |")
    rows = [("stored in the checkpoint", 0, None)]
    for n in (512, len(ctx.bn_images)):
        rows += [("as they are", n, None), ("cropped and mirrored", n, CropFlip.for_images(ctx.bn_images))]
    for label, n, transform in rows:
        net = copy.deepcopy(loaded.model)
        if n:
            recalibrate_batchnorm(net, ctx.bn_images[:n], transform=transform)
        ev = evaluate(net, bundle.evaluation)
        held = evaluate(net, replace(bundle.calibration, x=ctx.x_h, y=ctx.y_h, indices=None))
        lo, hi = ev.accuracy_ci
        print(f"| {label} | {n or '—'} | {held.loss:.4f} | {100 * ev.accuracy:.2f} "
              f"[{100 * lo:.2f}, {100 * hi:.2f}] |", flush=True)
    print()


def refresh_table(loaded, bundle, seeds: list[int]) -> None:
    """The engine's refresh check per calibration seed: held-out loss with the stored statistics
    and after a refresh on ``REFRESH_CHECK`` images each way (scored on as many held-out
    images), and whether the run refreshed."""
    print("The refresh check before pruning (magnitude, 0.5, no recalibration; it does not depend "
          "on the method): held-out loss per calibration seed\n")
    print("| seed | stored | refreshed as they are | refreshed cropped and mirrored | change with "
          "crop+flip | refreshed (margin 25%) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed in seeds:
        res = prune(loaded.model, bundle.calibration,
                    PruneRequest(method="magnitude", sparsity=0.5, seed=seed, recalibrate_bn=False),
                    arch="resnet20")
        L = res.info["bn_refresh_losses"]
        print(f"| {seed} | {L['stored']:.4f} | {L['none']:.4f} | {L['crop_flip']:.4f} | "
              f"{100 * (L['crop_flip'] / L['stored'] - 1):+.1f}% | "
              f"{'yes' if res.info['bn_refreshed_before'] else 'no'} |", flush=True)
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="magnitude,chita")
    ap.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--recal", default="on", choices=("on", "off"))
    ap.add_argument("--refresh-seeds", default="0,1,2,3,4,5,6,7",
                    help="calibration seeds for the refresh-check table ('' to skip it)")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    methods = args.methods.split(",")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    recal = args.recal == "on"
    dense_table(loaded, bundle)
    if args.refresh_seeds:
        refresh_table(loaded, bundle, [int(s) for s in args.refresh_seeds.split(",")])
    print(f"Pruned ResNet20, n = 1000, BatchNorm recalibration {args.recal}; test accuracy % on the "
          "846 test images per seed; validation = accuracy % on the calibration images the run "
          "did not use; Δ = auto − none, mean over seeds\n")
    print("| method | sparsity | statistics' images | chosen | test per seed | test mean ± sd | "
          "validation mean | Δ test | Δ validation | seconds (mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in methods:
        for s in sparsities:
            table: dict[str, tuple[list[float], list[float], list[float], set[str]]] = {}
            for augment in ("none", "auto"):
                tests, vals, secs, chosen = [], [], [], set()
                for seed in seeds:
                    req = PruneRequest(method=method, sparsity=s, samples=1000, seed=seed,
                                       recalibrate_bn=recal, bn_augment=augment)
                    t0 = time.perf_counter()
                    res = prune(loaded.model, bundle.calibration, req, arch="resnet20")
                    secs.append(time.perf_counter() - t0)
                    pruned = apply_result(loaded.model, res)
                    tests.append(100 * evaluate(pruned, bundle.evaluation).accuracy)
                    val = validation_images(bundle.calibration, seed, res)
                    vals.append(100 * evaluate(pruned, val).accuracy)
                    chosen.add(str(res.info.get("bn_augment")))
                table[augment] = (tests, vals, secs, chosen)
            for augment, (tests, vals, secs, chosen) in table.items():
                sd = statistics.stdev(tests) if len(tests) > 1 else 0.0
                if augment == "auto":
                    base_t, base_v = table["none"][0], table["none"][1]
                    dt = statistics.mean(a - b for a, b in zip(tests, base_t))
                    dv = statistics.mean(a - b for a, b in zip(vals, base_v))
                    deltas = f"{dt:+.2f} | {dv:+.2f}"
                else:
                    deltas = "— | —"
                print(f"| {method} | {s} | {augment} | {', '.join(sorted(chosen))} | "
                      f"{' / '.join(f'{t:.2f}' for t in tests)} | {statistics.mean(tests):.2f} ± {sd:.2f} | "
                      f"{statistics.mean(vals):.2f} | {deltas} | {statistics.mean(secs):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
