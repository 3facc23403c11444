"""The λ walk's held-out comparisons: a baseline rule against the current early stops.

Each step of the λ walk asks whether one candidate's mean held-out loss is below another's.
The current code (:class:`core.holdout.PairedHoldout`) scores both in batches and stops once
the paired per-image difference is ``HOLDOUT_Z`` standard errors from 0, or once the
challenger's trend makes a step improbable (``HOLDOUT_FUTILITY_Z``). The baseline is either
every candidate on all ``HOLDOUT`` held-out images (``--against every-image``: both early stops
off) or the code without the futility stop (``--against no-futility``). Both run in the same
process, alternating, on the same calibration seed: single runs at each sparsity and a 5-point
sweep, and the table gives seconds, held-out images scored, and whether the chosen λ and the
mask are the same.

    python benchmarks/paired_holdout.py [--model resnet20|mlpnet] [--seeds 0] [--recal]
        [--against every-image|no-futility] [--method chita|chita++|woodfisher]
        [--sparsities 0.5,0.6,0.7,0.8,0.9] [--no-sweep] [--stage-futility 3]

CHITA++ stages walk without the futility stop (``STAGE_FUTILITY_Z = inf``), so with
``--method chita++`` the two rules differ only where ``--stage-futility`` turns it on.
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

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402
from shared_models import shared_or_exit  # noqa: E402

from core import pruning  # noqa: E402
from core.pruning import PruneRequest, prune_path  # noqa: E402

SPARSITIES = {"resnet20": [0.5, 0.6, 0.7, 0.8, 0.9], "mlpnet": [0.5, 0.7, 0.9, 0.95, 0.98]}


def run(loaded, bundle, arch, req, sparsities, z, futility_z, stage_futility_z=math.inf):
    """(results, seconds) of one prune_path call with the walk's early stops set to ``z`` and
    ``futility_z`` (single-stage walks), ``stage_futility_z`` (CHITA++ stages); inf: off."""
    saved = pruning.HOLDOUT_Z, pruning.HOLDOUT_FUTILITY_Z, pruning.STAGE_FUTILITY_Z
    pruning.HOLDOUT_Z, pruning.HOLDOUT_FUTILITY_Z, pruning.STAGE_FUTILITY_Z = \
        z, futility_z, stage_futility_z
    try:
        t0 = time.perf_counter()
        results = prune_path(loaded.model, bundle.calibration, req, sparsities, arch=arch)
        return results, time.perf_counter() - t0
    finally:
        pruning.HOLDOUT_Z, pruning.HOLDOUT_FUTILITY_Z, pruning.STAGE_FUTILITY_Z = saved


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
    ap.add_argument("--against", default="every-image", choices=("every-image", "no-futility"))
    ap.add_argument("--method", default="chita", choices=("chita", "chita++", "woodfisher"))
    ap.add_argument("--sparsities", default=None, help="default: the model's 5 sweep points")
    ap.add_argument("--no-sweep", action="store_true", help="single runs only")
    ap.add_argument("--stage-futility", type=float, default=pruning.STAGE_FUTILITY_Z,
                    help="the current rule's futility stop at CHITA++ stages (default: the "
                         "code's STAGE_FUTILITY_Z, inf: off); the baseline's is off")
    args = ap.parse_args()
    loaded, bundle = shared_or_exit(args.model)
    sps = [float(s) for s in args.sparsities.split(",")] if args.sparsities else SPARSITIES[args.model]
    recal = None if args.recal else (False if args.model == "resnet20" else None)
    z, fz = pruning.HOLDOUT_Z, pruning.HOLDOUT_FUTILITY_Z
    base_z, base_fz = (math.inf, math.inf) if args.against == "every-image" else (z, math.inf)
    base_name = "every image" if args.against == "every-image" else "no futility stop"
    print(f"{args.model}, {args.method}, n = 1000, recalibration {'on' if args.recal else 'off'}; "
          f"baseline: HOLDOUT_Z = {base_z:g}, HOLDOUT_FUTILITY_Z = {base_fz:g} ({base_name}, "
          f"{pruning.HOLDOUT} held-out images); current: HOLDOUT_Z = {z:g}, "
          f"HOLDOUT_FUTILITY_Z = {fz:g}, STAGE_FUTILITY_Z = {args.stage_futility:g}, "
          f"batches of {pruning.HOLDOUT_BATCH}")
    print()
    print(f"| seed | sparsity | {base_name} s | current s | ratio | images scored ({base_name} / "
          "current) | same λ | same mask |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = [0.0, 0.0]
    sweeps = [0.0, 0.0]
    for seed in [int(s) for s in args.seeds.split(",")]:
        req = PruneRequest(method=args.method, sparsity=sps[0], samples=1000, seed=seed,
                           recalibrate_bn=recal)
        points = [[s] for s in sps] + ([] if args.no_sweep else [sps])  # alone, then the sweep
        for pts in points:
            r_full, t_full = run(loaded, bundle, args.model, replace(req, sparsity=pts[-1]), pts,
                                 base_z, base_fz)
            r_fast, t_fast = run(loaded, bundle, args.model, replace(req, sparsity=pts[-1]), pts, z, fz,
                                 args.stage_futility)
            if len(pts) == 1:
                totals[0] += t_full
                totals[1] += t_fast
            else:
                sweeps[0] += t_full
                sweeps[1] += t_fast
            same_lam = all(chosen(a) == chosen(b) for a, b in zip(r_full, r_fast))
            same_mask = all(bool(torch.equal(a.masks[k], b.masks[k])) for a, b in zip(r_full, r_fast)
                            for k in a.masks)
            label = f"sweep {pts[0]}–{pts[-1]}" if len(pts) > 1 else f"{pts[0]}"
            print(f"| {seed} | {label} | {t_full:.2f} | {t_fast:.2f} | {t_fast / t_full:.2f}× "
                  f"| {sum(map(images, r_full))} / {sum(map(images, r_fast))} "
                  f"| {'yes' if same_lam else 'no'} | {'yes' if same_mask else 'no'} |", flush=True)
    print()
    print(f"Single runs in all: {base_name} {totals[0]:.1f} s, current {totals[1]:.1f} s "
          f"({totals[1] / totals[0]:.2f}×).")
    if sweeps[0]:
        print(f"Sweeps against one run (the mean single run of the same rule, all seeds): "
              f"{base_name} {sweeps[0] / totals[0] * len(sps):.2f}×, "
              f"current {sweeps[1] / totals[1] * len(sps):.2f}×.")


if __name__ == "__main__":
    main()
