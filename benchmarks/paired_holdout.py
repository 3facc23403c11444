"""The λ walk's held-out comparisons: every image (baseline) against the paired early stop.

Each step of the λ walk asks whether one candidate's mean held-out loss is below another's.
The baseline scores every candidate on all ``HOLDOUT`` held-out images (``HOLDOUT_Z = inf``);
the current code (``core.pruning.HOLDOUT_Z``) scores both in batches and stops once the paired
per-image difference is ``HOLDOUT_Z`` standard errors from 0 (:class:`core.holdout.PairedHoldout`).
Both run in the same process, alternating, on the same calibration seed: single CHITA runs at
each sparsity and a 5-point sweep, and the table gives seconds, held-out images scored, and
whether the chosen λ and the mask are the same.

    python benchmarks/paired_holdout.py [--model resnet20|mlpnet] [--seeds 0] [--recal]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from shared_models import shared_or_exit  # noqa: E402

from core import pruning  # noqa: E402
from core.pruning import PruneRequest, prune_path  # noqa: E402

SPARSITIES = {"resnet20": [0.5, 0.6, 0.7, 0.8, 0.9], "mlpnet": [0.5, 0.7, 0.9, 0.95, 0.98]}


def run(loaded, bundle, arch, req, sparsities, z):
    """(results, seconds) of one prune_path call with the walk's threshold set to ``z``."""
    saved, pruning.HOLDOUT_Z = pruning.HOLDOUT_Z, z
    try:
        t0 = time.perf_counter()
        results = prune_path(loaded.model, bundle.calibration, req, sparsities, arch=arch)
        return results, time.perf_counter() - t0
    finally:
        pruning.HOLDOUT_Z = saved


def images(result) -> int:
    """Held-out images the result's λ walks scored, over all candidates."""
    return sum(sum(sel.get("holdout_images", [])) for sel in result.info["lambda_selection"])


def chosen(result) -> list[float]:
    return [sel["chosen"] for sel in result.info["lambda_selection"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20", choices=sorted(SPARSITIES))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recal", action="store_true", help="recalibrate BatchNorm (ResNet20)")
    args = ap.parse_args()
    loaded, bundle = shared_or_exit(args.model)
    sps = SPARSITIES[args.model]
    recal = None if args.recal else (False if args.model == "resnet20" else None)
    print(f"{args.model}, CHITA, n = 1000, recalibration {'on' if args.recal else 'off'}; "
          f"baseline: HOLDOUT_Z = inf (every candidate on all {pruning.HOLDOUT} held-out images); "
          f"current: HOLDOUT_Z = {pruning.HOLDOUT_Z:g}, batches of {pruning.HOLDOUT_BATCH}")
    print()
    print("| seed | sparsity | every image s | paired stop s | ratio | images scored (every / paired) "
          "| same λ | same mask |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = [0.0, 0.0]
    for seed in [int(s) for s in args.seeds.split(",")]:
        req = PruneRequest(method="chita", sparsity=sps[0], samples=1000, seed=seed,
                           recalibrate_bn=recal)
        points = [[s] for s in sps] + [sps]  # each sparsity alone, then the sweep
        for pts in points:
            r_full, t_full = run(loaded, bundle, args.model, replace(req, sparsity=pts[-1]), pts, math.inf)
            r_fast, t_fast = run(loaded, bundle, args.model, replace(req, sparsity=pts[-1]), pts,
                                 pruning.HOLDOUT_Z)
            if len(pts) == 1:
                totals[0] += t_full
                totals[1] += t_fast
            same_lam = all(chosen(a) == chosen(b) for a, b in zip(r_full, r_fast))
            same_mask = all(bool(torch.equal(a.masks[k], b.masks[k])) for a, b in zip(r_full, r_fast)
                            for k in a.masks)
            label = f"sweep {pts[0]}–{pts[-1]}" if len(pts) > 1 else f"{pts[0]}"
            print(f"| {seed} | {label} | {t_full:.2f} | {t_fast:.2f} | {t_fast / t_full:.2f}× "
                  f"| {sum(map(images, r_full))} / {sum(map(images, r_fast))} "
                  f"| {'yes' if same_lam else 'no'} | {'yes' if same_mask else 'no'} |", flush=True)
    print()
    print(f"Single runs in all: every image {totals[0]:.1f} s, paired stop {totals[1]:.1f} s "
          f"({totals[1] / totals[0]:.2f}×).")


if __name__ == "__main__":
    main()
