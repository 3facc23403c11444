"""How much one-shot accuracy moves with the calibration sample: CHITA against magnitude over seeds.

The seed reshuffles which calibration (training) images give the n = 1000 gradient rows and which
are held out to choose λ (`PruneRequest.seed`); the test images never change. A single run's
accuracy is one draw from this spread, and so is each row of the official code's figures
(seed 0, one run each in ../shared/reference/one_shot_figures.md).

    python benchmarks/seed_spread.py [--model resnet20] [--sparsities 0.8,0.9] [--seeds 0,1,2,3,4]
                                     [--methods magnitude,chita] [--old-lambda-grid]
                                     [--resample-stages] [--augment-calibration]
                                     [--first-order] [--stages N] [--schedule log|cubic]
                                     [--lambda-score loss|accuracy] [--validation]
                                     [--bn-scale-free auto|on|off] [--move-z Z] [--stage-move-z Z]
                                     [--bn-images N] [--fisher-labels data|sketch|sampled]

``--validation`` adds, under each row, the accuracy on the run's *validation* images: the
calibration images that neither G, nor the held-out images, nor BatchNorm's statistics used
(single-stage runs and CHITA++ on its default images; not with --resample-stages). They are
training images, so a rule can be judged on them without looking at the test set. They exclude
the first 2000 images past G's and the held-out ones whatever ``--bn-images`` says
(``shared_models.VALIDATION_SKIP``), so validation figures compare across settings.

``--fisher-labels`` is a diagnostic, not an engine option: ``data`` (the engine) gives G's rows
as gradients of the loss at the images' own labels, the *empirical* Fisher; ``sketch`` and
``sampled`` give rows whose outer products average to the *model's* Fisher (the Gauss–Newton
matrix of the cross-entropy, Σ_c p_c ∇log p_c ∇log p_cᵀ), which does not fade on images the
network already fits: the logits' cotangent p − e_y becomes diag(√p)(I − √p√pᵀ)z with z ~ N(0, I)
(``sketch``) or p − e_ŷ with ŷ drawn from p (``sampled``). One generator, seeded 0 at the start
of the process, draws for every run in order, so a command gives the same figures each time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, load_shared, validation_images  # noqa: E402

from core import pruning  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402


def augment(x: torch.Tensor, seed: int, pad: torch.Tensor) -> torch.Tensor:
    """Random 4-pixel-padded crop and horizontal flip of each image (pad: normalised black)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = x.shape
    padded = pad.view(1, c, 1, 1).expand(n, c, h + 8, w + 8).clone()
    padded[:, :, 4:4 + h, 4:4 + w] = x
    dx, dy = torch.randint(0, 9, (n,), generator=g), torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    out[flip] = out[flip].flip(-1)
    return out


def augment_calibration(norm) -> None:
    """Patch the engine so that G's images and the held-out images are augmented per seed."""
    pad = -torch.tensor(norm.mean) / torch.tensor(norm.std)  # (0 − mean) / std
    build = pruning._Context.build.__func__

    def augmented(cls, model, calibration, request, arch, progress, cancel):
        ctx = build(cls, model, calibration, request, arch, progress, cancel)
        ctx.x_g = augment(ctx.x_g, 100 + request.seed, pad)
        ctx.x_h = augment(ctx.x_h, 200 + request.seed, pad)
        return ctx

    pruning._Context.build = classmethod(augmented)


def model_fisher_rows(kind: str) -> None:
    """Patch ``core.fisher``'s closed-form rows to the model's Fisher (``--fisher-labels``).

    The closed form backpropagates the per-image cross-entropy; its value is kept (G's reported
    loss), and only the cotangent at the logits is replaced, so each row is Jᵀr with
    E[rrᵀ] = diag(p) − ppᵀ.
    """
    import types

    import torch.nn.functional as F

    from core import fisher

    gen = torch.Generator().manual_seed(0)

    def cross_entropy(logits, y, reduction="mean", **kw):
        loss = F.cross_entropy(logits, y, reduction=reduction, **kw)
        if reduction != "none" or not logits.requires_grad:
            return loss
        with torch.no_grad():
            p = F.softmax(logits.double(), 1)
            if kind == "sketch":
                s = p.sqrt()
                z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
                r = s * (z - s * (s * z).sum(1, keepdim=True))
            else:
                drawn = torch.multinomial(p, 1, generator=gen).squeeze(1)
                r = p - F.one_hot(drawn, p.shape[1]).double()
            r = r.float()
        lin = (logits * r).sum(1)
        return loss.detach() + lin - lin.detach()

    proxy = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")})
    proxy.cross_entropy = cross_entropy
    fisher.F = proxy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=sorted(SETUPS))
    ap.add_argument("--methods", default="magnitude,chita")
    ap.add_argument("--sparsities", default="0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--recalibrate-bn", action="store_true",
                    help="recalibrate BatchNorm after pruning (default: off, as the official rows)")
    ap.add_argument("--old-lambda-grid", action="store_true",
                    help="use the previous λ grid (1 … 1e-4 × mean Fisher diagonal) for comparison")
    ap.add_argument("--resample-stages", action="store_true",
                    help="CHITA++: each stage's G from the next n calibration images (default: the same n)")
    ap.add_argument("--first-order", action="store_true",
                    help="include the first-order term gᵀ(w − w̄) in the quadratic model")
    ap.add_argument("--stages", type=int, default=0, help="CHITA++ stages (default 0: automatic)")
    ap.add_argument("--schedule", default="log", choices=pruning.SCHEDULES,
                    help="CHITA++ schedule shape (core.pruning.chitapp_schedule)")
    ap.add_argument("--lambda-score", default="loss", choices=pruning.LAMBDA_SCORES,
                    help="what the λ walk minimises on the held-out images")
    ap.add_argument("--bn-scale-free", default="auto", choices=("auto", "on", "off"),
                    help="G without the channel scales a recalibration frees (PruneRequest."
                    "bn_scale_free): auto = the engine's default (single-stage CHITA and WoodFisher)")
    ap.add_argument("--move-z", type=float, default=None,
                    help="the single-stage λ walk's step margin in standard errors "
                    f"(core.pruning.HOLDOUT_MOVE_Z, default {pruning.HOLDOUT_MOVE_Z:g}; 0: the walk before it)")
    ap.add_argument("--stage-move-z", type=float, default=None,
                    help=f"the same for CHITA++ stages (STAGE_MOVE_Z, default {pruning.STAGE_MOVE_Z:g})")
    ap.add_argument("--validation", action="store_true",
                    help="also print accuracy on the calibration images the run did not use")
    ap.add_argument("--augment-calibration", action="store_true",
                    help="diagnostic for single-stage methods: G's and the held-out images randomly "
                    "cropped (padding 4) and flipped, as the official code's CIFAR-10 loader does")
    ap.add_argument("--bn-images", type=int, default=None,
                    help="calibration images of a BatchNorm recalibration (core.pruning.BN_IMAGES, "
                    "default 1000; 2000 until 2026-12-06)")
    ap.add_argument("--fisher-labels", default="data", choices=("data", "sketch", "sampled"),
                    help="diagnostic: G's rows at the images' labels (data, the engine's empirical "
                    "Fisher) or from the model's predictive distribution (the model's Fisher)")
    args = ap.parse_args()
    if args.fisher_labels != "data" and args.first_order:
        ap.error("--first-order needs the mean gradient, which the model's Fisher rows do not give")
    if args.fisher_labels != "data":
        model_fisher_rows(args.fisher_labels)
    if args.bn_images is not None:
        pruning.BN_IMAGES = args.bn_images
    if args.old_lambda_grid:
        pruning.LAMBDA_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)
        pruning.LAMBDA_START = pruning.LAMBDA_GRID.index(1e-2)
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    if args.augment_calibration:
        augment_calibration(bundle.normalization)
    if args.move_z is not None:
        pruning.HOLDOUT_MOVE_Z = args.move_z
    if args.stage_move_z is not None:
        pruning.STAGE_MOVE_Z = args.stage_move_z
    scale_free = {"auto": None, "on": True, "off": False}[args.bn_scale_free]
    seeds = [int(s) for s in args.seeds.split(",")]
    sparsities = [float(s) for s in args.sparsities.split(",")]
    methods = args.methods.split(",")
    print(f"{args.model}, n = 1000, accuracy on {len(bundle.evaluation.y)} test images, "
          f"BatchNorm recalibration {'on' if args.recalibrate_bn else 'off'}, "
          f"λ grid {pruning.LAMBDA_GRID[0]:g} … {pruning.LAMBDA_GRID[-1]:g} × mean Fisher diagonal, "
          f"CHITA++ {args.stages or 'automatic'} stages ({args.schedule} schedule) "
          f"{'each on new' if args.resample_stages else 'on the same'} gradient images"
          f"{', calibration images augmented' if args.augment_calibration else ''}"
          f"{', first-order term on' if args.first_order else ''}"
          f"{'' if args.fisher_labels == 'data' else ', model-Fisher rows: ' + args.fisher_labels}"
          f"{'' if args.bn_scale_free == 'auto' else ', channel-scale-free G ' + args.bn_scale_free}"
          f", λ walk step margin {pruning.HOLDOUT_MOVE_Z:g} (CHITA++ stages {pruning.STAGE_MOVE_Z:g}) "
          "standard errors"
          f", λ chosen on held-out {args.lambda_score}\n")
    print("| method | sparsity | " + " | ".join(f"seed {s}" for s in seeds) +
          " | mean ± sd | mean − magnitude mean | seconds (mean) |")
    print("| --- | --- |" + " --- |" * len(seeds) + " --- | --- | --- |")
    magnitude_mean: dict[float, float] = {}
    for s in sparsities:
        for method in methods:
            accs, secs, vals = [], [], []
            for seed in seeds:
                req = PruneRequest(method=method, sparsity=s, samples=1000, seed=seed,
                                   recalibrate_bn=args.recalibrate_bn,
                                   resample_stages=args.resample_stages,
                                   first_order=args.first_order, stages=args.stages,
                                   schedule=args.schedule, lambda_score=args.lambda_score,
                                   bn_scale_free=scale_free)
                t0 = time.perf_counter()
                res = prune(loaded.model, bundle.calibration, req, arch=args.model)
                secs.append(time.perf_counter() - t0)
                pruned = apply_result(loaded.model, res)
                accs.append(100 * evaluate(pruned, bundle.evaluation).accuracy)
                if args.validation:
                    vals.append(100 * evaluate(pruned, validation_images(bundle.calibration, seed,
                                                                         res)).accuracy)
            mean, sd = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
            if method == "magnitude":
                magnitude_mean[s] = mean
            delta = f"{mean - magnitude_mean[s]:+.2f}" if s in magnitude_mean and method != "magnitude" else "—"
            print(f"| {method} | {s} | " + " | ".join(f"{a:.2f}" for a in accs) +
                  f" | {mean:.2f} ± {sd:.2f} | {delta} | {statistics.mean(secs):.1f} |", flush=True)
            if vals:
                vsd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                print(f"| {method} (validation) | {s} | " + " | ".join(f"{a:.2f}" for a in vals) +
                      f" | {statistics.mean(vals):.2f} ± {vsd:.2f} | — | — |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
