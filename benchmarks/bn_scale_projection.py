"""Gradients that know BatchNorm recalibration will follow the pruning: with and without.

After a BatchNorm recalibration the loss no longer depends on the scale of a convolution's output
channel: scaling the channel's weights w_c by α scales its pre-BatchNorm output, its mean and its
standard deviation by α, and the recalibrated layer gives the same output. So along each w_c the
true curvature is zero, while the per-sample gradients (BatchNorm in eval mode, fixed statistics)
see one. `PruneRequest.bn_scale_free` removes that direction from every gradient row, per output
channel (:func:`core.batchnorm.remove_channel_scale`),

    g_c ← g_c − (g_c · ŵ_c) ŵ_c,        ŵ_c = w̄_c / ‖w̄_c‖,

for every Conv2d whose output goes straight into a BatchNorm2d. It is on by default for
single-stage CHITA with recalibration; this script runs that on ResNet20 both ways (``--method``
runs another method that takes gradients, e.g. WoodFisher or OBD, both ways instead).
What decides is measured on calibration images only: the held-out loss (of the network the run
returns, statistics included), the quantity the engine chooses λ on, and the accuracy on the
*validation* images, the calibration images the run uses for nothing (2,160 training images
beside G's 1,000, the 500 held-out and BatchNorm's 1,000 more). The held-out accuracy and the
test accuracy are printed beside them.

    python benchmarks/bn_scale_projection.py [--method chita] [--sparsities 0.7,0.8,0.9]
        [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared, validation_images  # noqa: E402

from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.pruning import PruneRequest, _Context, apply_result, prune  # noqa: E402


def held_out(model: nn.Module, result, calibration, req: PruneRequest) -> tuple[float, float]:
    """(loss, accuracy) of the pruned network on the run's own held-out calibration images."""
    ctx = _Context.build(model, calibration, req, "resnet20", None, None, refresh_bn=False)
    pruned = apply_result(model, result)
    with torch.no_grad():
        logits = torch.cat([pruned(ctx.x_h[i:i + 250]) for i in range(0, len(ctx.x_h), 250)])
    loss = float(torch.nn.functional.cross_entropy(logits, ctx.y_h))
    return loss, float((logits.argmax(1) == ctx.y_h).float().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--method", default="chita", choices=["chita", "woodfisher", "obd"])
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = [float(s) for s in args.sparsities.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    names = {"chita": "single-stage CHITA", "woodfisher": "WoodFisher", "obd": "OBD"}
    print(f"ResNet20, {names[args.method]} with BatchNorm recalibration, n = 1000; held-out loss and "
          "accuracy % on the run's 500 held-out training images (the returned network, statistics "
          "included); validation accuracy % on the calibration images the run did not use; test "
          "accuracy % on the 846 test images; Δ = projected − plain on the same test images, paired "
          "95% interval\n")
    print("| seed | sparsity | magnitude+recal test acc | held-out loss plain / projected | held-out "
          "acc plain / projected | validation acc plain / projected | test acc plain | "
          "test acc projected | Δ points [paired 95%] |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lower, higher, val_higher, gains, val_gains = 0, 0, 0, [], []
    for seed in seeds:
        for s in sparsities:
            req = PruneRequest(method=args.method, sparsity=s, samples=1000, seed=seed, recalibrate_bn=True)
            mag = evaluate(apply_result(loaded.model, prune(loaded.model, bundle.calibration,
                                                            replace(req, method="magnitude"),
                                                            arch="resnet20")), bundle.evaluation)
            plain = prune(loaded.model, bundle.calibration, replace(req, bn_scale_free=False),
                          arch="resnet20")
            proj = prune(loaded.model, bundle.calibration, replace(req, bn_scale_free=True),
                         arch="resnet20")
            ev_plain = evaluate(apply_result(loaded.model, plain), bundle.evaluation)
            ev_proj = evaluate(apply_result(loaded.model, proj), bundle.evaluation)
            loss_plain, acc_plain = held_out(loaded.model, plain, bundle.calibration, req)
            loss_proj, acc_proj = held_out(loaded.model, proj, bundle.calibration, req)
            val = validation_images(bundle.calibration, seed, plain)
            val_plain = evaluate(apply_result(loaded.model, plain), val).accuracy
            val_proj = evaluate(apply_result(loaded.model, proj), val).accuracy
            lower += loss_proj < loss_plain
            higher += acc_proj > acc_plain
            val_higher += val_proj > val_plain
            val_gains.append(100 * (val_proj - val_plain))
            d = paired_difference(ev_proj, ev_plain)
            gains.append(100 * d.difference)
            lo, hi = d.ci
            print(f"| {seed} | {s} | {100 * mag.accuracy:.2f} | {loss_plain:.4f} / {loss_proj:.4f} | "
                  f"{100 * acc_plain:.1f} / {100 * acc_proj:.1f} | {100 * val_plain:.2f} / {100 * val_proj:.2f} | "
                  f"{100 * ev_plain.accuracy:.2f} | {100 * ev_proj.accuracy:.2f} | "
                  f"{100 * d.difference:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] |", flush=True)
    runs = len(seeds) * len(sparsities)
    print(f"\nProjected gradients lower the held-out loss in {lower} of {runs} runs and raise the "
          f"held-out accuracy in {higher}; they raise the validation accuracy in {val_higher} "
          f"(mean change {sum(val_gains) / runs:+.2f} points); mean test accuracy change "
          f"{sum(gains) / runs:+.2f} points.")
    for s in sparsities:
        at = [g for (i, g) in enumerate(val_gains) if sparsities[i % len(sparsities)] == s]
        print(f"Validation accuracy change at {s}: {' / '.join(f'{g:+.2f}' for g in at)} "
              f"(mean {sum(at) / len(at):+.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
