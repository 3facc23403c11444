"""Pruning requests and results, and the orchestration that runs a method on a model.

The GUI and CLI build a :class:`PruneRequest` and render a :class:`PruneResult`; they never reach
into the methods. :func:`prune` never modifies the model it is given.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.augment import BN_AUGMENTS, CropFlip
from core.batchnorm import (
    has_batchnorm,
    recalibrate_batchnorm,
    remove_channel_scale,
    scripted_batchnorm,
)
from core.errors import StudioError
from core.evaluate import PairedDifference, forward_in_chunks, set_eval_mode
from core.fisher import check_memory, fisher_factor, streamed_fisher_diagonal
from core.gradient_cache import GradientCache  # re-exported: core.pruning.GradientCache
from core.grid_walk import walk_grid, walk_grid_by
from core.holdout import PairedHoldout
from core.methods.chita import (
    chita_solve,
    objective_lower_bound,
    support_state,
    support_weights,
)
from core.methods.magnitude import magnitude_prune
from core.methods.obd import obd_prune
from core.methods.quadratic import LocalQuadratic, fisher_scale
from core.methods.selection import Budget, global_budget, layer_budgets, select
from core.methods.woodfisher import inverse_fisher_diagonals, woodfisher_solve
from core.progress import CancelToken, Progress, ProgressFn, check, report
from core.prunable import module_type_name, prunable_parameters
from core.refine import GaussNewtonStep
from core.schedule import AUTO_STAGES, SCHEDULES, auto_stages, chitapp_schedule  # noqa: F401 (re-exported)
from core.sparsity_pattern import (
    BlockBudget,
    block_budget,
    parse_pattern,
    partial_budget,
)

if TYPE_CHECKING:
    from core.data import ImageSet

METHODS: tuple[str, ...] = ("chita", "chita++", "magnitude", "magnitude_layer", "obd", "woodfisher")
METHOD_LABELS: dict[str, str] = {
    "chita": "CHITA",
    "chita++": "CHITA++",
    "magnitude": "Magnitude (global)",
    "magnitude_layer": "Magnitude (per layer)",
    "obd": "OBD (diagonal Fisher)",
    "woodfisher": "WoodFisher (OBS)",
}


@dataclass(frozen=True)
class PruneRequest:
    """What to prune and how.

    ``sparsity`` is the fraction of the prunable weights set to zero (0 ≤ s < 1).
    ``scope`` is ``"global"`` (one budget over all prunable weights) or ``"layer"`` (the same
    sparsity in every layer). ``layers`` names the prunable weights (parameter names); ``None``
    takes the model's preset (see :mod:`core.prunable`). ``keep_first`` / ``keep_last`` leave
    the first / last of them (in the model's parameter order) dense, as deployments often keep
    the input and classifier layers (:func:`request_layers`). ``samples`` is n, the number of
    per-sample gradient rows. ``lam`` is the ridge λ; ``None`` chooses it on held-out calibration
    loss. ``recalibrate_bn`` ``None`` means on for models with BatchNorm. ``seed`` 0 uses the
    calibration images in the data split's own (seeded) order; another seed reshuffles which of
    them give G and which are held out for λ. CHITA++ recalibrates BatchNorm (when on) after its
    last stage only, unless ``recalibrate_between_stages``: the weights each stage solves for
    already compensate for the statistics they were solved under, and new statistics on top of
    that correction measured worse (ResNet20 at 0.9: 45.4% against 65.1% without).
    With ``resample_stages`` each CHITA++ stage takes its n gradient images from the next block
    of calibration images (cycling, the held-out ones never among them), as the official code's
    shuffled loader does; the first stage uses single-stage CHITA's images. Off by default: over
    5 calibration samples on ResNet20 it measured 0.5 points lower at 0.8 and 1.2 lower at 0.9
    (docs/benchmarks.md), within the spread between samples.
    ``pattern`` "N:M" (e.g. "2:4", what sparse tensor cores run) keeps at most N of every M
    consecutive weights along each layer's input dimension (:mod:`core.sparsity_pattern`);
    ``sparsity`` must then be 1 − N/M, the pattern's own, and ``scope`` does not matter (every
    layer is pruned at that sparsity). Layers whose input dimension is not a multiple of M stay
    dense (``info["pattern"]["dense_layers"]``). Every method takes a pattern: the top-k
    selections keep the N best of each block and CHITA's swaps stay inside blocks; CHITA++'s
    stages put it on a rising share of the blocks (those it costs least, by magnitude,
    :func:`core.sparsity_pattern.partial_budget`), on all of them at the last stage.
    ``schedule`` is the shape of CHITA++'s rising sparsities: ``"log"`` (the default), each
    stage removing a share of the kept weights that shrinks toward the target, or ``"cubic"``,
    the schedule before it (:func:`chitapp_schedule`).
    ``refine_steps`` > 0 refines the kept weights after pruning, mask fixed: each step takes
    gradients at the pruned network and a damped Gauss–Newton step whose ridge is chosen on
    held-out calibration loss, taken only if that loss falls (:mod:`core.refine`). Its
    gradients come from every calibration image but the held-out ones, as n mini-batch rows
    (``info["refine_images_per_row"]``). With 13 images per row on MLPNet/MNIST, 3 steps took
    CHITA++ at 0.98 to 88.24% against 85.31% from n single images (docs/benchmarks.md).
    ``images_per_row`` B > 1 makes each of the n gradient rows the mean gradient of B
    calibration images (mini-batch-averaged rows, centred and scaled so that they still
    estimate the per-sample Fisher, :func:`core.fisher.fisher_factor`): the Fisher then comes
    from n·B images at the solver cost of n rows. B is
    lowered to what the calibration set holds beside the held-out images (``info`` records
    both). Off (1) by default, as in the papers' set-up.
    ``bn_scale_free`` removes from G the channel-scale directions that BatchNorm recalibration
    makes free (:func:`core.batchnorm.remove_channel_scale`); it acts only when BatchNorm is
    recalibrated after pruning, and when the held-out check then declines the recalibration (at
    low sparsity) the run is solved again on the plain G (``info["bn_scale_free_declined"]``).
    ``None`` means on for single-stage CHITA and WoodFisher (measured over 5 calibration samples
    on ResNet20: accuracy on unused calibration images higher in 12 and 11 of 15 runs, +2.1 and
    +1.8 points at 0.9; docs/benchmarks.md) and off for OBD and CHITA++.
    ``lambda_score`` is what the λ walk minimises on the held-out images: ``"loss"`` (mean
    cross-entropy, the default) or ``"accuracy"`` (the error rate, ties broken by the loss).
    ``update_scale`` α moves the kept weights of single-stage CHITA and WoodFisher, and of each
    CHITA++ stage, by α times the method's update, w̄ + α(w − w̄): 1 (the default) is the papers'
    algorithms; ``None`` chooses α on the held-out error where no BatchNorm recalibration
    follows the update (``UPDATE_SCALES``; with recalibration α stays 1, where it measured
    level; CHITA++'s intermediate stages are never followed by one). The one-shot step's backsolve fits n
    gradient rows exactly and overshoots on unseen images: without recalibration on ResNet20
    the damped update gained +3.2 validation points at 0.8 for CHITA and +6.7 for WoodFisher
    (5 of 5 seeds each), and CHITA lost 0.4 at 0.9 (benchmarks/update_scale.py).
    ``bn_augment`` says which images BatchNorm statistics are recomputed on (the refresh before
    pruning, the recalibration after it and inside the λ walk): ``"none"`` the calibration images
    as they are, ``"crop_flip"`` randomly cropped from a black-padded copy and mirrored
    (:class:`core.augment.CropFlip`, CIFAR's training augmentation), ``"auto"`` (the default)
    whichever of the two gives the dense network the lower held-out loss, decided once per run
    in the refresh check (``info["bn_augment"]``). On ResNet20 (../shared) it picks crop+flip,
    and magnitude with recalibration goes from 81.87 / 70.64 / 41.77 to 85.53 / 79.53 / 50.33
    at 0.7 / 0.8 / 0.9, mean of 5 calibration seeds (benchmarks/bn_augment.py).
    """

    method: str = "chita"
    sparsity: float = 0.5
    scope: str = "global"
    layers: tuple[str, ...] | None = None
    samples: int = 1000
    seed: int = 0
    lam: float | None = None
    recalibrate_bn: bool | None = None
    stages: int = 0  # CHITA++ stages; 0 = auto_stages(number of prunable layers)
    recalibrate_between_stages: bool = False  # CHITA++: also recalibrate BatchNorm after each stage
    first_order: bool = False
    resample_stages: bool = False  # CHITA++: each stage's G from the next n calibration images
    refine_steps: int = 0  # damped Gauss–Newton steps on the kept weights after pruning (core.refine)
    images_per_row: int = 1  # B: each gradient row averages B calibration images
    lambda_score: str = "loss"  # λ walk's held-out score: "loss" or "accuracy" (error, then loss)
    bn_scale_free: bool | None = None  # G without the channel scales recalibration frees;
    # None: on for SCALE_FREE_METHODS
    bn_augment: str = "auto"  # BatchNorm statistics' images: "auto", "none" or "crop_flip"
    schedule: str = "log"  # CHITA++ schedule shape: "log" or "cubic" (chitapp_schedule)
    update_scale: float | None = 1.0  # α in w̄ + α(w − w̄) on the kept weights (UPDATE_SCALE_METHODS);
    # None: chosen on held-out error from UPDATE_SCALES when BatchNorm is not recalibrated
    keep_first: bool = False  # leave the first prunable layer dense (request_layers)
    keep_last: bool = False  # leave the last prunable layer dense
    pattern: str = ""  # "N:M" semi-structured sparsity (core.sparsity_pattern); "" unstructured


@dataclass(frozen=True)
class PruneResult:
    """The outcome of one pruning run: new weights and masks for the prunable parameters.

    ``weights`` and ``masks`` map parameter names to tensors of the parameter's shape;
    ``buffers`` holds recalibrated BatchNorm statistics (empty if none).
    ``objective_trace`` is the quadratic model's objective per solver iteration (empty for
    methods that do not minimise it), ``timings`` seconds per stage.
    """

    request: PruneRequest
    weights: Mapping[str, torch.Tensor]
    masks: Mapping[str, torch.Tensor]
    layer_sparsity: Mapping[str, float]
    nonzeros: int
    total: int
    objective_trace: tuple[float, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    lam: float | None = None
    buffers: Mapping[str, torch.Tensor] = field(default_factory=dict)
    info: Mapping[str, object] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Achieved fraction of zeros over the prunable weights."""
        return 1.0 - self.nonzeros / max(1, self.total)

    @property
    def nbytes(self) -> int:
        """Memory the result holds in tensors: weights, masks and BatchNorm buffers."""
        return sum(int(t.numel()) * int(t.element_size())
                   for part in (self.weights, self.masks, self.buffers) for t in part.values())


# ------------------------------------------------------------------------------------------
# Orchestration
# ------------------------------------------------------------------------------------------

NEEDS_GRADIENTS = {"chita", "chita++", "obd", "woodfisher"}
# single-stage methods whose G drops the channel scales by default when BatchNorm is recalibrated
# (each measured over 5 calibration samples on ResNet20, docs/benchmarks.md)
SCALE_FREE_METHODS = frozenset({"chita", "woodfisher"})
HOLDOUT = 500  # held-out calibration images for choosing λ (never test images)
# The λ walk compares two candidates on the held-out images in batches of HOLDOUT_BATCH and stops
# once their paired per-image loss difference is HOLDOUT_Z standard errors from 0; otherwise it
# scores all HOLDOUT images (core.holdout.PairedHoldout). math.inf: every candidate on every image.
HOLDOUT_BATCH = 128
HOLDOUT_Z = 3.0
# Where the paired test never becomes clear, the walk steps to a neighbouring λ only if its mean
# held-out loss over all HOLDOUT images is lower by more than HOLDOUT_MOVE_Z standard errors: a
# flat stretch of the grid ends the walk instead of leading it on by noise (docs/benchmarks.md,
# "The λ walk steps only on evidence"). 0: by any amount (the walk before 2026-11-25).
HOLDOUT_MOVE_Z = 2.0
# CHITA++ stages walk from the previous stage's λ by any lower mean: the margin held λ back
# there (ResNet20 at 0.9: 1.35 validation points lower over 5 seeds).
STAGE_MOVE_Z = 0.0
# In a single-stage walk a challenger that is not clearly better stops early, as "not lower",
# once at the trend of the images scored so far it would reach the step threshold with
# probability under Φ(−3) (core.holdout, futility_z): the same λ and masks on 15 ResNet20 and 15
# MLPNet runs and 6 sweeps, 0.74× / 0.64× the held-out images (docs/benchmarks.md, "Hopeless
# challengers stop early"). CHITA++ stages walk without it (STAGE_FUTILITY_Z): one stage's
# other λ changed ResNet20's 0.9 result, which moves by points with any change.
HOLDOUT_FUTILITY_Z = 3.0
STAGE_FUTILITY_Z = math.inf
# calibration images for a BatchNorm recalibration (none of the held-out ones): G's first. 2000
# until 2026-12-06; 1000 gave the same accuracy over 5 seeds (magnitude, CHITA at 0.7-0.9, CHITA++
# at 0.9, paired means within 0.3 points) in 0.75-0.93x the seconds (docs/benchmarks.md)
BN_IMAGES = 1000
MAX_REFINE_STEPS = 20  # cap on PruneRequest.refine_steps
MAX_IMAGES_PER_ROW = 256  # cap on PruneRequest.images_per_row
RECAL_CHECK = 512  # images for the BatchNorm passes inside λ selection
# The refresh check before pruning refreshes on REFRESH_CHECK calibration images per kind and
# scores on the first REFRESH_CHECK held-out images; when it finds the statistics stale, the
# refresh that replaces them takes all BN_IMAGES. Its choices are far from the line on
# ResNet20 (8 seeds, benchmarks/refresh_check.py): at this size the wrong kind of images gives
# 2.8–10.6× the stored statistics' loss and a crop+flip refresh 0.96–1.57×; the decisions are
# those of 512 refresh and 500 held-out images on every seed, in 0.51× the seconds.
REFRESH_CHECK = 256
# The refresh before pruning replaces the stored statistics only when it lowers the held-out loss
# by more than this fraction: a refresh on a few hundred images is a noisy estimate, and on
# ResNet20, whose stored statistics are not stale, a refresh on 512 images moved the loss by
# −13% to +15% over 8 calibration seeds (docs/benchmarks.md, "BatchNorm statistics from
# augmented images"); on REFRESH_CHECK images, by −4% to +57%.
REFRESH_MARGIN = 0.25
# λ candidates × the mean Fisher diagonal, large → small. Wide on purpose: the walk only scores
# where the held-out loss keeps falling, and a narrower grid stopped it at an end while the loss
# was still falling (ResNet20 at 0.9: 7.9 at the old top, 6.9 at 100×).
LAMBDA_GRID: tuple[float, ...] = (1e3, 1e2, 1e1, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
LAMBDA_START = LAMBDA_GRID.index(1e-2)  # where a walk with no previous choice starts
LAMBDA_SCORES = ("loss", "accuracy")  # what the λ walk minimises on the held-out images
# PruneRequest(update_scale=None): single-stage CHITA and WoodFisher without BatchNorm
# recalibration take α·(their update) on the kept weights, α from this grid chosen by a walk from
# 1 on held-out error (the loss breaking ties). Off by default: on ResNet20 over 5 calibration
# seeds CHITA gained +1.3 and +3.2 validation points at 0.7 and 0.8 and lost 0.4 at 0.9, for
# 1.1-1.2x the seconds (WoodFisher +1.4 / +6.7 / 0.0), and CHITA was level on MLPNet; CHITA++
# at 0.9 with recalibration, α at each intermediate stage: +1.4 (3 of 5 seeds up), 1.09x the
# seconds (benchmarks/update_scale.py, docs/benchmarks.md).
UPDATE_SCALES: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
UPDATE_SCALE_METHODS = frozenset({"chita", "woodfisher", "chita++"})  # methods with an update (CHITA++: per stage)


def validate_request(request: PruneRequest) -> None:
    """Raise :class:`StudioError` naming the field of ``request`` that is out of range, and the fix."""
    if request.method not in METHODS:
        raise StudioError(f"unknown pruning method {request.method!r}", field="method",
                          fix=f"choose one of: {', '.join(METHODS)}.")
    if not 0.0 <= request.sparsity < 1.0:
        raise StudioError(f"sparsity {request.sparsity} is outside [0, 1)", field="sparsity",
                          fix="give the fraction of weights to remove, e.g. 0.9 for 90%.")
    if request.scope not in ("global", "layer"):
        raise StudioError(f"unknown scope {request.scope!r}", field="scope",
                          fix="use 'global' or 'layer'.")
    if request.samples < 1:
        raise StudioError("samples must be at least 1", field="samples")
    if request.lam is not None and request.lam <= 0:
        raise StudioError("λ must be positive", field="lambda", fix="e.g. 1e-4, or leave it on auto.")
    if not 0 <= request.refine_steps <= MAX_REFINE_STEPS:
        raise StudioError(f"refine steps {request.refine_steps} is outside 0–{MAX_REFINE_STEPS}",
                          field="refine steps", fix="use 0 (off) or a few steps, e.g. 3.")
    if not 1 <= request.images_per_row <= MAX_IMAGES_PER_ROW:
        raise StudioError(f"images per row {request.images_per_row} is outside "
                          f"1–{MAX_IMAGES_PER_ROW}", field="images per row",
                          fix="use 1 (one image per gradient row) or e.g. 4–16 to average "
                          "mini-batches.")
    if request.lambda_score not in LAMBDA_SCORES:
        raise StudioError(f"unknown λ score {request.lambda_score!r}", field="lambda score",
                          fix=f"use one of: {', '.join(LAMBDA_SCORES)}.")
    if request.schedule not in SCHEDULES:
        raise StudioError(f"unknown CHITA++ schedule {request.schedule!r}", field="schedule",
                          fix=f"use one of: {', '.join(SCHEDULES)}.")
    if request.update_scale is not None and not 0.0 <= request.update_scale <= 1.0:
        raise StudioError(f"update scale {request.update_scale} is outside [0, 1]", field="update scale",
                          fix="use 1 for the whole update, a fraction to damp it, or auto.")
    if request.bn_augment not in BN_AUGMENTS:
        raise StudioError(f"unknown BatchNorm augmentation {request.bn_augment!r}",
                          field="bn augment", fix=f"use one of: {', '.join(BN_AUGMENTS)}.")
    pattern = parse_pattern(request.pattern)
    if pattern is not None:
        if abs(request.sparsity - pattern.sparsity) > 1e-9:
            raise StudioError(f"the pattern {pattern} sets the sparsity to {100 * pattern.sparsity:g}%, "
                              f"not the {100 * request.sparsity:g}% asked", field="sparsity",
                              fix=f"ask for sparsity {pattern.sparsity:g} with this pattern, or leave "
                              "the pattern empty for another sparsity.")


def default_layers(model: nn.Module, arch: str | None = None) -> list[str]:
    """The prunable weights a run uses when the request names none (literature preset)."""
    return prunable_parameters(model, arch, preset="literature")


def request_layers(model: nn.Module, request: PruneRequest, arch: str | None = None) -> list[str]:
    """The weights ``request`` prunes: its ``layers`` (else :func:`default_layers`) less the
    first and/or last of them in the model's parameter order where ``keep_first`` /
    ``keep_last`` ask. Raises :class:`StudioError` where that leaves none."""
    names = list(request.layers) if request.layers else default_layers(model, arch)
    if request.keep_first or request.keep_last:
        order = {n: i for i, (n, _) in enumerate(model.named_parameters())}
        ranked = sorted((n for n in names if n in order), key=order.__getitem__)
        kept = ({ranked[0]} if request.keep_first and ranked else set()) | \
               ({ranked[-1]} if request.keep_last and ranked else set())
        names = [n for n in names if n not in kept]
        if not names:
            raise StudioError(f"keeping {' and '.join(sorted(kept))} dense leaves no layer to prune",
                              field="layers", fix="keep fewer layers dense, or name more layers to prune.")
    return names


def _transposed_convs(model: nn.Module, names: list[str]) -> set[str]:
    """The weights in ``names`` of transposed convolutions: their dim 1 is their output
    channels, so an N:M pattern leaves them dense (core.sparsity_pattern.block_budget)."""
    found = set()
    for name in names:
        path = name.rsplit(".", 1)[0] if "." in name else ""
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if module_type_name(module).startswith("ConvTranspose"):
            found.add(name)
    return found


def _flat(model: nn.Module, names: list[str]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in names]).to(torch.float32)


@torch.no_grad()
def _write(model: nn.Module, names: list[str], flat: torch.Tensor) -> None:
    params = dict(model.named_parameters())
    off = 0
    for n in names:
        p = params[n]
        p.copy_(flat[off:off + p.numel()].view_as(p))
        off += p.numel()


@torch.no_grad()
def _loss_and_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    batch: int = 128) -> tuple[float, float]:
    """Mean cross-entropy and error rate of ``model`` (eval mode) on ``(x, y)``."""
    set_eval_mode(model)
    total, wrong = 0.0, 0
    for i in range(0, len(x), batch):
        z = forward_in_chunks(model, x[i:i + batch])
        total += float(F.cross_entropy(z, y[i:i + batch], reduction="sum"))
        wrong += int((z.argmax(1) != y[i:i + batch]).sum())
    return total / max(1, len(x)), wrong / max(1, len(x))


@torch.no_grad()
def _per_image_loss_and_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image cross-entropy and 0/1 error of ``model`` (eval mode) on one batch ``(x, y)``."""
    set_eval_mode(model)
    if not len(x):
        return torch.zeros(0), torch.zeros(0)
    z = forward_in_chunks(model, x)
    return F.cross_entropy(z, y, reduction="none"), (z.argmax(1) != y).float()


def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> float:
    return _loss_and_error(model, x, y, batch)[0]


STAGE_REFRESHES = 5  # verified refreshes of the mask search at an intermediate CHITA++ stage
def prune(model: nn.Module, calibration: "ImageSet", request: PruneRequest, *,
          arch: str | None = None, progress: ProgressFn | None = None,
          cancel: CancelToken | None = None, cache: GradientCache | None = None,
          on_stage: Callable[[Mapping[str, object]], None] | None = None) -> PruneResult:
    """Run one pruning method on a copy of ``model`` and return the new weights and masks.

    Calibration images: the first ``request.samples`` give the gradient rows G; up to
    ``HOLDOUT`` of the rest are held out to choose λ (never test images). ``model`` is never
    modified. ``cache`` keeps G for the next run on the same model and sample. ``on_stage``:
    see :func:`prune_path`.
    """
    return prune_path(model, calibration, request, [request.sparsity], arch=arch,
                      progress=progress, cancel=cancel, cache=cache, on_stage=on_stage)[0]


def refine_result(model: nn.Module, calibration: "ImageSet", result: PruneResult, steps: int, *,
                  arch: str | None = None, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> PruneResult:
    """Refine a finished result's kept weights (mask fixed) without pruning again.

    The same up to ``steps`` damped Gauss–Newton steps as ``PruneRequest.refine_steps``, each
    taken only if it lowers held-out calibration loss, on the result's network: ``model`` with
    the result applied. The calibration images are split as the result's own run split them
    (its request's ``samples``, ``seed`` and ``images_per_row``), so the held-out images that
    judge each step are the ones that chose λ. Returns a new result with the same mask; its
    ``request.refine_steps`` counts every step asked for so far and ``info["refinement"]`` logs
    them all. ``model`` and ``result`` are not modified.
    """
    done = result.request.refine_steps
    if steps < 1 or done + steps > MAX_REFINE_STEPS:
        left = MAX_REFINE_STEPS - done
        raise StudioError(f"refinement steps must be at least 1 and, with the {done} this result "
                          f"has had, at most {MAX_REFINE_STEPS} in all; asked for {steps}",
                          field="refine steps",
                          fix=(f"ask for {'1 step' if left == 1 else f'1 to {left} steps'}."
                               if left > 0 else
                               "this result has had all the refinement steps there are."))
    t0 = time.perf_counter()
    request = replace(result.request, refine_steps=steps)
    ctx = _Context.build(model, calibration, request, arch, progress, cancel, refresh_bn=False)
    # recalibrate on the images the result's own run chose (its refresh check's decision)
    ctx.bn_transform = ctx._bn_transform(str(result.info.get("bn_augment", request.bn_augment)))
    names = list(result.masks)
    if names != ctx.names:
        raise StudioError("the result prunes other layers than this model's preset",
                          field="layers", fix="refine a result made for this model.")
    if not len(ctx.x_h):
        raise StudioError(f"the calibration set's {len(ctx.x_all)} images leave none held out to "
                          "judge refinement steps", field="calibration data",
                          fix="use a calibration set with a few hundred more images than samples.")
    work = apply_result(model, result)
    mask = torch.cat([result.masks[n].reshape(-1) for n in names])
    info: dict[str, object] = dict(result.info)
    info["refine_images_per_row"] = ctx.refine_per_row
    log = list(info.pop("refinement", None) or [])  # type: ignore[call-overload]
    timings: dict[str, float] = {}
    recalibrated = ctx._refine(work, mask, timings, info)
    info["refinement"] = log + list(info.pop("refinement", None) or [])  # type: ignore[call-overload]
    buffers = ctx._finish(work, timings, info, recalibrated=recalibrated) or dict(result.buffers)
    total = dict(result.timings)
    for key, secs in timings.items():
        total[key] = total.get(key, 0.0) + secs
    total["total"] = total.get("total", 0.0) + time.perf_counter() - t0
    out = ctx._result(result.sparsity, work, mask, list(result.objective_trace), result.lam, {},
                      info, buffers)
    report(progress, "done", 1, 1, "done")
    return replace(out, request=replace(result.request,
                                        refine_steps=result.request.refine_steps + steps),
                   timings=total)


def prune_path(model: nn.Module, calibration: "ImageSet", request: PruneRequest,
               sparsities: list[float], *, arch: str | None = None,
               progress: ProgressFn | None = None,
               cancel: CancelToken | None = None,
               cache: GradientCache | None = None,
               on_result: Callable[[int, PruneResult], None] | None = None,
               on_stage: Callable[[Mapping[str, object]], None] | None = None) -> list[PruneResult]:
    """Prune at several sparsities (returned in the order given) with one set of gradients.

    Single-stage methods compute G once; CHITA warm-starts each sparsity from the previous
    solution (ascending order) and reuses its n×n Gram. CHITA++ recomputes gradients per stage:
    its sparsities share one schedule, to the sparsest, off which the others branch for their
    closing stages (:meth:`_Context.chitapp_path`). ``model`` is never modified.

    ``on_result(i, result)`` is called as soon as the result for ``sparsities[i]`` is finished
    (ascending sparsity; CHITA++: its branches before the sparsest), so that a front end can
    show each point while the others are still running. Its time counts in no result's timings.
    ``on_stage(record)`` is called after each CHITA++ stage's solve with that stage's entry of
    ``info["final"]`` (sparsity, λ, objective, magnitude_objective, objective_lower_bound,
    iterations, converged, …) and ``stage``, ``stages`` and ``target``: a front end can draw the
    schedule while it runs.
    """
    if request.pattern and len(set(sparsities)) > 1:
        raise StudioError(f"a sweep over sparsities cannot keep the pattern {request.pattern}: the "
                          "pattern fixes the sparsity", field="pattern",
                          fix="prune at the pattern's sparsity alone, or sweep without a pattern.")
    for s in sparsities:
        validate_request(replace(request, sparsity=s))
    t_start = time.perf_counter()
    # built at the lowest sparsity asked: the one the model's own zeros must allow (each result
    # carries its own sparsity)
    ctx = _Context.build(model, calibration, replace(request, sparsity=min(sparsities)), arch, progress,
                         cancel, cache)
    ctx.on_stage = on_stage
    order = sorted(range(len(sparsities)), key=lambda i: sparsities[i])
    results: list[PruneResult | None] = [None] * len(sparsities)
    handed = 0.0  # seconds spent in on_result, outside this function's own work

    def hand(i: int, result: PruneResult) -> None:
        nonlocal handed
        results[i] = result
        if on_result is not None:
            t0 = time.perf_counter()
            on_result(i, result)
            handed += time.perf_counter() - t0

    if request.method == "chita++":
        targets = sorted(set(sparsities))

        def finished(target: float, result: PruneResult) -> None:
            for i in order:
                if sparsities[i] == target:
                    hand(i, result)

        ctx.chitapp_path(targets, on_target=finished)
    else:
        for i in order:
            hand(i, ctx.single(sparsities[i]))
    ctx.timings_shared["total"] = time.perf_counter() - t_start - handed
    report(progress, "done", 1, 1, "done")
    return [r for r in results if r is not None]


@dataclass(eq=False)
class _StageRun:
    """One CHITA++ schedule being walked: its working copy and what its stages produced."""

    target: float
    schedule: list[float]
    work: nn.Module | None
    info: dict
    first: int = 1  # number of its first stage (a branch continues the main schedule's count)
    done: int = 0  # stages solved
    lam_index: int | None = None  # the last λ chosen: the next stage's walk starts there
    mask: torch.Tensor | None = None
    lam: float | None = None
    trace: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of its own stages

    def label(self) -> str:
        """"stage k/T (sparsity s)" for its next stage, numbered along the whole schedule."""
        return (f"stage {self.first + self.done}/{self.first - 1 + len(self.schedule)} "
                f"(sparsity {self.schedule[self.done]:.3f})")


class _Context:
    """What a run computes once: the working copy, layers, data split, gradients, warm starts."""

    def __init__(self) -> None:
        self.timings_shared: dict[str, float] = {}
        self.move_z: float | None = None  # the λ walk's step margin (None: HOLDOUT_MOVE_Z)
        self.diagonal_only = False  # A is one row √diag(F) (OBD on a network whose G does not fit)
        self.on_stage: Callable[[Mapping[str, object]], None] | None = None  # CHITA++ stage records

    @classmethod
    def build(cls, model, calibration, request, arch, progress, cancel, cache=None,
              refresh_bn: bool = True) -> "_Context":
        """``refresh_bn`` False skips the check of stale BatchNorm statistics before pruning
        (:func:`refine_result` starts from a pruned network's own statistics)."""
        self = cls()
        self.request, self.progress, self.cancel = request, progress, cancel
        self.base = copy.deepcopy(model)
        set_eval_mode(self.base)
        self.names = request_layers(self.base, request, arch)
        self.A: torch.Tensor | None = None
        self.c: torch.Tensor | None = None  # Aᵀc = mean gradient (core.fisher.fisher_factor)
        # single-stage methods with gradients may reuse the last run's G (same model and sample)
        self.cache = cache if request.method in NEEDS_GRADIENTS - {"chita++"} else None
        if cache is not None and request.method == "chita++":
            cache.clear()  # CHITA++ renews G at every stage: free the kept one for it
        self.bn = has_batchnorm(self.base)
        self.recal = self.bn if request.recalibrate_bn is None else bool(request.recalibrate_bn and self.bn)
        self.scale_free = self.recal and (request.method in SCALE_FREE_METHODS
                                          if request.bn_scale_free is None
                                          else bool(request.bn_scale_free))
        self.cache_key = (tuple(self.names), request.samples, request.seed, str(arch),
                          request.images_per_row, self.scale_free, request.bn_augment)
        self.cached = (self.cache.get(model, calibration.x, self.cache_key)
                       if self.cache is not None else None)
        if self.cache is not None and self.cached is None:
            self.cache.clear()  # a miss: free the kept G before this run builds its own
        self.derived: dict | None = None  # what is computed from the cached G, kept with it
        params = dict(self.base.named_parameters())
        bad = [n for n in self.names if n not in params]
        if bad:
            raise StudioError(f"the model has no parameters named {bad[:5]}", field="layers",
                              fix="use names from `chita-studio info MODEL`.")
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [params[n].numel() for n in self.names]
        self.groups, off = [], 0
        for sz in self.sizes:
            self.groups.append(slice(off, off + sz))
            off += sz
        self.p = off
        pattern = parse_pattern(request.pattern)
        self.blocks: BlockBudget | None = (block_budget(self.names, self.shapes, pattern,
                                                        _transposed_convs(self.base, self.names))
                                           if pattern is not None else None)
        self._check_existing_zeros(params)
        x, y = calibration.x, calibration.y
        if request.seed:
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(request.seed))
            x, y = x[perm], y[perm]
        n = min(request.samples, len(x))
        if request.method in NEEDS_GRADIENTS and len(x) - n < 64 and len(x) > 128:
            n = len(x) - max(64, len(x) // 10)  # keep some images to choose λ on
        # mini-batch-averaged rows: B images per row, as many as fit beside the held-out images
        self.rows = n
        per_row = request.images_per_row > 1 and (request.method in NEEDS_GRADIENTS
                                                  or request.refine_steps > 0)
        self.per_row = max(1, min(request.images_per_row, (len(x) - HOLDOUT) // n)) \
            if per_row else 1
        n *= self.per_row  # images, from here on
        self.x_g, self.y_g = x[:n], y[:n]
        self.x_h, self.y_h = x[n:n + HOLDOUT], y[n:n + HOLDOUT]
        # CHITA++ stages draw their gradient images from all but the held-out ones (indices:
        # no copy of the calibration set)
        self.x_all, self.y_all = x, y
        self.stage_rows = torch.cat([torch.arange(n), torch.arange(n + len(self.x_h), len(x))])
        # the refinement's gradients: every calibration image but the held-out ones, n rows of
        # as many images each as that gives (never fewer than G's own B)
        self.refine_per_row = max(self.per_row, min(MAX_IMAGES_PER_ROW, len(self.stage_rows) // self.rows))
        refine_rows = self.stage_rows[: self.rows * self.refine_per_row]
        self.x_r, self.y_r = (x[refine_rows], y[refine_rows]) if request.refine_steps > 0 else (x[:0], y[:0])
        # BatchNorm statistics come from images the held-out loss never sees: G's, then the rest
        rest = x[n + len(self.x_h):]
        self.bn_images = torch.cat([self.x_g, rest[: max(0, BN_IMAGES - n)]])[:BN_IMAGES]
        self.info: dict[str, object] = {"samples": self.rows, "holdout": len(self.x_h),
                                        "layers": len(self.names)}
        if self.blocks is not None:
            self.info["pattern"] = {"pattern": str(pattern), "blocks": int(self.blocks.blocks.shape[0]),
                                    "dense_layers": list(self.blocks.dense_layers),
                                    "dense_weights": int(self.blocks.dense.numel())}
        if request.keep_first or request.keep_last:  # the layers left dense, by name
            every = request_layers(self.base, replace(request, keep_first=False, keep_last=False), arch)
            self.info["kept_dense"] = [n for n in every if n not in self.names]
        if (request.method in NEEDS_GRADIENTS or request.refine_steps > 0) \
                and self.rows < request.samples:  # the calibration set holds fewer
            self.info["samples_asked"] = request.samples
            self.info["calibration_images"] = len(x)
        if per_row:  # only where gradients are taken
            self.info["images_per_row"] = self.per_row
            self.info["images_per_row_asked"] = request.images_per_row
        if request.refine_steps > 0:
            self.info["refine_images_per_row"] = self.refine_per_row
        if self.cached is not None:  # the same base and G as the last run: no refresh check
            self.base, self.A, self.fbar, kept, self.derived = self.cached
            self.c = self.derived.get("c")
            self.info.update(kept)
            self.info["gradients_reused"] = True
        elif self.bn and len(self.x_h) and refresh_bn:
            self._refresh_check_cached(model, calibration.x, cache)
        # the images every recalibration takes: the refresh check's choice, or the request's own
        chosen = self.info.get("bn_augment", "none" if request.bn_augment == "auto" else request.bn_augment)
        self.bn_transform = self._bn_transform(str(chosen))
        self.model, self.images = model, calibration.x  # the cache's keys
        # WoodFisher: (λ grid, AAᵀ, diag(F_λ⁻¹) per λ), kept with G in the cache
        self.fisher_inverse: tuple | None = (self.derived.get("fisher_inverse")
                                             if self.derived is not None else None)
        self.warm = None  # previous CHITA solution at the same A
        self.lam_index: int | None = None  # grid index of the last λ chosen: the next walk's start
        self.max_refresh: int | None = None  # cap on the mask search's refreshes (None: converge)
        self.holdout_recal: bool | None = None  # λ scoring recalibrates BatchNorm (None: self.recal)
        self.stage_units, self.stage_label = 0, ""  # CHITA++: stage solves done, current stage
        self.stage_buffer: torch.Tensor | None = None  # CHITA++: the last stage's A, this run's own
        return self

    def _check_existing_zeros(self, params: Mapping[str, torch.Tensor]) -> None:
        """A model pruned before (a pruned export opened again, fine-tuned weights) has zeros of
        its own, and no method brings a zero weight back (``self.frozen``, passed to every
        selection and to CHITA's swap search): a sparsity under the one the weights already
        have would keep zeros and count them as kept. Refused, naming the least sparsity that
        can be asked (per layer with ``scope="layer"``). Under an N:M pattern a block with fewer
        nonzeros than N keeps those, so the result is sparser than the pattern's sparsity."""
        nonzero = [int(torch.count_nonzero(params[n].detach())) for n in self.names]
        self.frozen: torch.Tensor | None = None  # the model's own zeros: no method keeps them
        if sum(nonzero) == self.p:
            return
        self.frozen = torch.cat([params[n].detach().reshape(-1) == 0 for n in self.names])
        if self.blocks is not None:  # N:M keeps at most N a block: a block short of them keeps fewer
            return
        request = self.request
        layer = request.scope == "layer" or request.method == "magnitude_layer"
        budgets = layer_budgets(self.sizes, request.sparsity) if layer else [global_budget(self.p, request.sparsity)]
        have = nonzero if layer else [sum(nonzero)]
        sizes = self.sizes if layer else [self.p]
        if all(k <= h for k, h in zip(budgets, have)):
            return
        least = max(1 - h / size for h, size in zip(have, sizes))

        def fits(s: float) -> bool:
            ks = layer_budgets(self.sizes, s) if layer else [global_budget(self.p, s)]
            return all(k <= h for k, h in zip(ks, have))

        tenths = math.floor(1000 * least)  # the least sparsity in tenths of a percent that fits
        while tenths < 999 and not fits(tenths / 1000):
            tenths += 1
        where = "one of its layers already has" if layer else "the layers to prune already have"
        raise StudioError(
            f"{where} {100 * least:.1f}% zeros (the model was pruned before), more than the "
            f"{100 * request.sparsity:.1f}% asked; a zero weight stays zero, so that sparsity cannot be reached",
            field="sparsity", fix=f"ask for at least {tenths / 10:.1f}% sparsity.")

    def _bn_transform(self, augment: str) -> CropFlip | None:
        """The batch transform for BatchNorm statistics of kind ``augment`` ("none" or
        "crop_flip"; None for "none", a model without BatchNorm or inputs that are not images)."""
        if augment != "crop_flip" or not self.bn or self.bn_images.ndim != 4:
            return None
        return CropFlip.for_images(self.bn_images, self.request.seed)

    CHECK_RECORD = ("bn_refreshed_before", "bn_augment", "bn_refresh_losses")

    def _refresh_check_cached(self, model: nn.Module, images: torch.Tensor,
                              cache: GradientCache | None) -> None:
        """:meth:`_refresh_check`, or its decision from ``cache`` when this model, these images
        and the same held-out and BatchNorm images (seed, sample size) were checked before: the
        same statistics, restored without a pass (``info["bn_check_reused"]``). Any method uses
        it, so a live magnitude preview after the first one skips the check."""
        key = (self.request.seed, len(self.x_g), len(self.x_h), self.request.bn_augment,
               REFRESH_CHECK, REFRESH_MARGIN, BN_IMAGES)
        hit = cache.check_get(model, images, key) if cache is not None else None
        if hit is None:
            self._refresh_check()
            if cache is not None:
                buffers = ({n: b.detach().clone() for n, b in self.base.named_buffers()}
                           if self.info["bn_refreshed_before"] else None)
                cache.check_put(model, images, key, {k: self.info[k] for k in self.CHECK_RECORD},
                                buffers)
            return
        t0 = time.perf_counter()
        info, buffers = hit
        if buffers is not None:
            own = dict(self.base.named_buffers())
            with torch.no_grad():
                for n, b in buffers.items():
                    own[n].copy_(b)
        self.info.update(info)
        self.info["bn_check_reused"] = True
        self.timings_shared["batchnorm_before"] = time.perf_counter() - t0

    def _refresh_check(self) -> None:
        """Refresh stale running statistics before pruning when that lowers held-out loss by
        more than ``REFRESH_MARGIN`` (stale ones: a refresh of fine ones only adds noise), and
        choose the images every later recalibration takes (``request.bn_augment``): with "auto",
        a refresh on ``REFRESH_CHECK`` calibration images as they are and one on cropped and
        flipped copies are both scored on ``REFRESH_CHECK`` held-out images, and the lower
        decides. Stale statistics are then refreshed on all ``BN_IMAGES`` images of that kind."""
        t0 = time.perf_counter()
        x_h, y_h = self.x_h[:REFRESH_CHECK], self.y_h[:REFRESH_CHECK]
        before = _mean_loss(self.base, x_h, y_h)
        kinds = (("none", "crop_flip") if self.request.bn_augment == "auto"
                 else (self.request.bn_augment,))
        if self.bn_images.ndim != 4:
            kinds = ("none",)  # not images: nothing to crop
        trials: dict[str, float] = {}
        for kind in kinds:
            trial = copy.deepcopy(self.base)
            recalibrate_batchnorm(trial, self.bn_images[:REFRESH_CHECK], cancel=self.cancel,
                                  transform=self._bn_transform(kind))
            trials[kind] = _mean_loss(trial, x_h, y_h)
        kind = min(trials, key=trials.__getitem__)
        stale = trials[kind] < before * (1.0 - REFRESH_MARGIN)
        if stale:  # decided on a few hundred images; the statistics kept take them all
            recalibrate_batchnorm(self.base, self.bn_images, cancel=self.cancel,
                                  transform=self._bn_transform(kind))
        self.info["bn_refreshed_before"] = bool(stale)
        self.info["bn_augment"] = kind
        self.info["bn_refresh_losses"] = {"stored": before, **trials}
        self.timings_shared["batchnorm_before"] = time.perf_counter() - t0

    # --- gradients -------------------------------------------------------------------------
    @property
    def first_order(self) -> bool | torch.Tensor:
        """The first-order term's c (Aᵀc = mean gradient at the current G), or False (off)."""
        return self.c if self.request.first_order and self.c is not None else False

    def _g_fits(self) -> bool:
        """Whether G (n×p float32) fits the memory budget (:func:`core.fisher.check_memory`)."""
        try:
            check_memory(len(self.x_g), self.p)
        except StudioError:
            return False
        return True

    def stage_images(self, stage: int) -> None:
        """Point G's images at CHITA++ stage ``stage``'s block (0: single-stage CHITA's)."""
        n = len(self.x_g)
        if stage == 0 or len(self.stage_rows) <= n:
            self.x_g, self.y_g = self.x_all[:n], self.y_all[:n]
            return
        rows = self.stage_rows[(torch.arange(n) + stage * n) % len(self.stage_rows)]
        self.x_g, self.y_g = self.x_all[rows], self.y_all[rows]

    def gradients(self, work: nn.Module, timings: dict[str, float],
                  out: torch.Tensor | None = None) -> torch.Tensor:
        """The Fisher factor A at ``work``'s weights: G/√n, G scaled in place (no copy), or with
        ``images_per_row`` > 1 centred mini-batch rows and a mean row (:func:`fisher_factor`).
        ``out``: a buffer of A's shape that nothing reads any more (the previous CHITA++ stage's
        A), written instead of new memory."""
        t0 = time.perf_counter()
        self.A = self.fisher_inverse = None  # free the previous G, and WoodFisher's K and diag(F⁻¹)
        if self.request.method == "obd" and self.per_row == 1 and not self._g_fits():
            # OBD reads only diag(F): summed a block of images at a time, as one row √diag(F)
            # whose fisher_diagonal is diag(F) (the same ranking as G's diag(F)/n); never cached
            fdiag = streamed_fisher_diagonal(work, self.x_g, self.y_g, self.names,
                                             progress=self.progress, cancel=self.cancel)
            self.A, self.c = fdiag.sqrt().unsqueeze(0), torch.zeros(1, dtype=torch.float64)
            self.fbar, self.warm, self.diagonal_only = float(fdiag.mean()), None, True
            self.info["obd_streamed"] = True
            timings["gradients"] = timings.get("gradients", 0.0) + time.perf_counter() - t0
            return self.A
        ff = fisher_factor(work, self.x_g, self.y_g, self.names, images_per_row=self.per_row,
                           out=out, progress=self.progress, cancel=self.cancel)
        if self.scale_free:  # recalibration follows: the channel scales it fixes cost nothing
            self.info["bn_scale_free_channels"] = remove_channel_scale(ff.A, work, self.names,
                                                                       self.groups, self.x_g)
        timings["gradients"] = timings.get("gradients", 0.0) + time.perf_counter() - t0
        self.A, self.c = ff.A, ff.c
        # mean of diag(AᵀA) = ‖A‖²_F / p: the λ grid's scale
        self.fbar = fisher_scale(self.A)
        self.warm = None
        return self.A

    # --- one linearisation point, one sparsity ---------------------------------------------
    def single(self, sparsity: float) -> PruneResult:
        """Single-stage pruning at ``sparsity`` from the (refreshed) dense weights."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        work = copy.deepcopy(self.base)
        if self.request.method in NEEDS_GRADIENTS and self.A is None:
            self.gradients(work, timings)
            if self.cache is not None and not self.diagonal_only:
                kept = {k_: self.info[k_] for k_ in ("bn_refreshed_before", "bn_scale_free_channels",
                                                     "bn_augment", "bn_refresh_losses")
                        if k_ in self.info}
                self.derived = self.cache.put(self.model, self.images, self.cache_key, self.base,
                                              self.A, self.fbar, kept)
                self.derived["c"] = self.c
        info = dict(self.info)
        lam_index = self.lam_index
        w, mask, trace, lam = self._solve(work, sparsity, timings, info, "")
        if self.request.method in UPDATE_SCALE_METHODS:
            w = self._scale_update(work, w, mask, timings, info, sparsity)
        _write(work, self.names, w)
        recalibrated = self._refine(work, mask, timings, info)
        buffers = self._finish(work, timings, info, recalibrated=recalibrated)
        if self.scale_free and not (recalibrated or info["recalibration"]["applied"]):
            return self._without_scale_free(sparsity, lam_index, timings, t0)
        timings["total"] = time.perf_counter() - t0
        return self._result(sparsity, work, mask, trace, lam, timings, info, buffers)

    def _without_scale_free(self, sparsity: float, lam_index: int | None,
                            timings: dict[str, float], t0: float) -> PruneResult:
        """The held-out check declined the recalibration that the channel-scale-free G assumed
        (at low sparsity the stored statistics can be better): solve again on the plain G, as a
        run with ``bn_scale_free=False`` would. The next solve (a sweep's next point) takes the
        channel-scale-free G again."""
        cache, self.cache = self.cache, None  # the cached G is the channel-scale-free one: kept
        self.scale_free, self.lam_index, self.A = False, lam_index, None
        channels = self.info.pop("bn_scale_free_channels", None)
        try:
            result = self.single(sparsity)
        finally:
            self.scale_free, self.A, self.cache = True, None, cache
        for k_, v in timings.items():  # the first solve's seconds count too
            if k_ != "total":
                result.timings[k_] = result.timings.get(k_, 0.0) + v
        result.timings["total"] = (time.perf_counter() - t0
                                   + self.timings_shared.get("batchnorm_before", 0.0))
        result.info["bn_scale_free_declined"] = channels
        return result

    def chitapp_path(self, targets: list[float],
                     on_target: Callable[[float, PruneResult], None] | None = None
                     ) -> list[PruneResult]:
        """CHITA++ at each sparsity of ``targets`` (ascending, distinct) along one schedule.

        The sparsest target's schedule runs exactly as a CHITA++ run at that sparsity alone
        would: the same stages, the same result. Every other target s branches off it at the
        last stage below s: a copy of the network there takes the stages of s's own schedule
        that lie above that point (its small closing steps) and finishes. A branch's first stage
        solves with the gradients the main schedule computes at that point, so a branch costs
        its closing stages only, not a run from the dense network; one G is alive at a time.
        ``on_target(s, result)`` is called as each target's result is finished.
        """
        T = self.request.stages or auto_stages(len(self.names))
        self.info["schedule_shape"] = self.request.schedule
        main = _StageRun(targets[-1], chitapp_schedule(targets[-1], T, self.request.schedule),
                         copy.deepcopy(self.base), dict(self.info))
        levels = [0.0] + main.schedule
        branch_at: dict[int, list[_StageRun]] = {}
        for s in targets[:-1]:
            t = max((i for i in range(len(main.schedule)) if levels[i] < s), default=0)
            tail = [u for u in chitapp_schedule(s, T, self.request.schedule) if u > levels[t]] or [s]
            run = _StageRun(s, tail, None, dict(self.info), first=t + 1)
            run.info["branched_after_stage"] = t
            run.info["schedule"] = levels[1:t + 1] + tail
            branch_at.setdefault(t, []).append(run)
        main.info["schedule"] = main.schedule
        units = len(main.schedule) + sum(len(b.schedule) for bs in branch_at.values() for b in bs)
        units += self.request.refine_steps * len(targets)  # each refinement step counts as a stage
        outer = self.progress
        self.progress = self._whole_run_progress(outer, units)
        try:
            return self._walk_path(main, branch_at, targets, on_target)
        finally:
            self.progress = outer

    def _whole_run_progress(self, outer: ProgressFn | None, units: int) -> ProgressFn | None:
        """Report a CHITA++ run as one stage, "CHITA++", of ``units`` stage solves, so that a
        front end's ETA covers the whole run: a stage's gradient pass is its first half, the
        λ walk and mask search its second; the inner report's text goes into the message."""
        if outer is None:
            return None
        last = [0.0]  # never report less than before (a step's label comes before its gradients)

        def staged(p: Progress) -> None:
            if p.stage == "done":
                return
            part = 0.5 * p.fraction if p.stage == "gradients" else 0.5
            text = p.message or p.stage
            if self.stage_label and not text.startswith(self.stage_label):
                text = f"{self.stage_label}: {text}"
            last[0] = max(last[0], min(units, self.stage_units + part))
            outer(Progress("CHITA++", last[0], units, text))

        return staged

    def _walk_path(self, main: "_StageRun", branch_at: dict[int, list["_StageRun"]],
                   targets: list[float],
                   on_target: Callable[[float, PruneResult], None] | None = None
                   ) -> list[PruneResult]:
        """The main schedule's stages with each branch run where it leaves (see chitapp_path)."""
        results: dict[float, PruneResult] = {}

        def finish(run: "_StageRun") -> None:
            results[run.target] = self._stage_finish(run)
            if on_target is not None:
                on_target(run.target, results[run.target])

        for t in range(len(main.schedule)):
            self._stage_gradients(main, t)
            branches = branch_at.get(t, [])
            for b in branches:  # first branch stage: the main schedule's G at this point
                b.work = copy.deepcopy(main.work)
                b.lam_index = main.lam_index
                self._stage_solve(b)
            self._stage_solve(main)
            for b in branches:
                while b.done < len(b.schedule):
                    self._stage_gradients(b, t + b.done)
                    self._stage_solve(b)
                finish(b)
        finish(main)
        return [results[s] for s in targets]

    def _stage_gradients(self, run: "_StageRun", stage: int) -> None:
        """G at ``run``'s current weights (the images of stage ``stage`` when resampling)."""
        check(self.cancel)
        t0 = time.perf_counter()
        self.stage_images(stage if self.request.resample_stages else 0)
        self.stage_label = run.label()
        # every stage's G has the same shape, and the previous stage's is read no more: its
        # memory takes the new one (a fresh GB costs 0.3–0.4 s of page faults to first touch)
        self.gradients(run.work, run.timings, out=self.stage_buffer)
        self.stage_buffer = self.A
        run.seconds += time.perf_counter() - t0

    def _stage_solve(self, run: "_StageRun") -> None:
        """Solve ``run``'s next stage with the current G and write its weights."""
        check(self.cancel)
        t0 = time.perf_counter()
        i = run.done
        s = run.schedule[i]
        last = i == len(run.schedule) - 1
        label = self.stage_label = run.label()
        # an intermediate stage's mask is searched again from the next stage's gradients:
        # it gets a few refreshes; the last stage runs to convergence
        self.max_refresh = None if last else STAGE_REFRESHES
        # λ is scored the way the stage's weights will be used: with recalibrated statistics
        # only where a recalibration follows the stage
        between = self.recal and self.request.recalibrate_between_stages
        self.holdout_recal = self.recal and (between or last)
        self.move_z = STAGE_MOVE_Z
        self.lam_index = run.lam_index  # each stage's λ walk starts from the run's previous choice
        self.warm = None  # every stage starts its mask search from its own magnitude mask
        w, run.mask, stage_trace, run.lam = self._solve(run.work, s, run.timings, run.info, label,
                                                        method="chita")
        if self.request.update_scale != 1.0:  # each stage's update scaled, α per stage
            rec: dict[str, object] = {}
            w = self._scale_update(run.work, w, run.mask, run.timings, rec, s,
                                   recalibrated=bool(self.holdout_recal))
            run.info.setdefault("update_scale_stages", []).append(rec["update_scale"])
        run.lam_index = self.lam_index
        run.trace.extend(stage_trace)
        if self.on_stage is not None and run.info.get("final"):
            self.on_stage({**run.info["final"][-1], "stage": run.first + run.done,
                           "stages": run.first - 1 + len(run.schedule), "target": run.target})
        _write(run.work, self.names, w)
        if between:
            run.info.setdefault("recalibration_stages", []).append(
                self._maybe_recalibrate(run.work, run.timings))
        run.done += 1
        self.stage_units += 1
        run.seconds += time.perf_counter() - t0

    def _stage_finish(self, run: "_StageRun") -> PruneResult:
        """Recalibrate (when on) and package a finished schedule; frees its G."""
        t0 = time.perf_counter()
        self.A = self.stage_buffer = None
        self.holdout_recal = self.move_z = None
        self.stage_images(0)
        between = self.recal and self.request.recalibrate_between_stages
        self.stage_label = f"sparsity {run.target:.3f}"
        refined = self._refine(run.work, run.mask, run.timings, run.info)
        buffers = self._finish(run.work, run.timings, run.info, recalibrated=between or refined)
        run.timings["total"] = run.seconds + time.perf_counter() - t0
        return self._result(run.target, run.work, run.mask, run.trace, run.lam, run.timings,
                            run.info, buffers)

    def _solve(self, work, sparsity, timings, info, label, method=None):
        """One stage's method at one sparsity; returns (weights, mask, trace, λ)."""
        method = method or self.request.method
        wbar = _flat(work, self.names)
        k: Budget
        if self.blocks is not None:  # N of every M: the pattern fixes the sparsity
            k = self.blocks
            if sparsity < self.blocks.pattern.sparsity - 1e-9:  # a CHITA++ stage on the way
                k = partial_budget(self.blocks, wbar, round(self.blocks.blocks.shape[0] * sparsity
                                                             / self.blocks.pattern.sparsity))
        elif self.request.scope == "layer" or method == "magnitude_layer":
            k = layer_budgets(self.sizes, sparsity)
        else:
            k = global_budget(self.p, sparsity)
        if method in ("magnitude", "magnitude_layer"):
            w, mask = magnitude_prune(wbar, k, self.groups, self.frozen)
            return w, mask, [], None
        A = self.A
        if method == "obd":
            w, mask = obd_prune(A, wbar, k, self.groups, frozen=self.frozen)
            return w, mask, [], None
        grid = [self.request.lam] if self.request.lam is not None else \
            [g * self.fbar for g in LAMBDA_GRID]
        t0 = time.perf_counter()
        if method == "woodfisher":
            out = self._woodfisher(work, A, wbar, k, grid, info, sparsity, label)
        else:
            out = self._chita(work, A, wbar, k, grid, info, sparsity, label)
        timings["solve"] = timings.get("solve", 0.0) + time.perf_counter() - t0
        return out

    def _choose_lambda(self, work, grid, candidates, info, sparsity, label):
        """The grid index whose candidate weights have the lowest held-out calibration loss.

        A walk, not a full scan: start at the previous choice (a sweep's previous sparsity, a
        CHITA++ stage's previous stage) or at ``LAMBDA_START``, compare both neighbours with it,
        then keep stepping the way the loss falls until it rises or the grid ends. Along a grid
        where the held-out loss is unimodal in log λ this finds the scan's minimum with 3–5
        candidates instead of 10. Each comparison scores the two candidates on the held-out
        images batch by batch and stops when the paired difference is clear
        (:class:`core.holdout.PairedHoldout`, ``HOLDOUT_Z``), or, in a single-stage run, when
        the challenger's trend makes a step improbable (``HOLDOUT_FUTILITY_Z``); where neither
        happens, a step needs a mean lower by ``HOLDOUT_MOVE_Z`` standard errors
        (``STAGE_MOVE_Z`` in CHITA++ stages); with ``lambda_score="accuracy"``
        every candidate it looks at is scored on all of them. The record gives each candidate's
        mean loss and error over the images it was scored on (``None``: not scored).
        """
        by_accuracy = self.request.lambda_score == "accuracy"
        trials: dict[int, nn.Module] = {}
        score = self._holdout_scorer(work, candidates, trials, "choosing λ",
                                     [f"{label} λ = {g:.3g}".strip() for g in grid])
        stage = self.move_z is not None  # a CHITA++ stage's walk
        held = PairedHoldout(score, len(self.x_h), batch=HOLDOUT_BATCH, first=HOLDOUT_BATCH,
                             z=math.inf if by_accuracy else HOLDOUT_Z,
                             move_z=self.move_z if stage else HOLDOUT_MOVE_Z,
                             futility_z=STAGE_FUTILITY_Z if stage else HOLDOUT_FUTILITY_Z,
                             forget=lambda i: trials.pop(i, None))  # one model copy per contender
        start = self.lam_index if self.lam_index is not None else \
            (LAMBDA_START if len(grid) == len(LAMBDA_GRID) else len(grid) // 2)
        best = walk_grid_by(_lower_error(held, trials) if by_accuracy else held.less, len(grid), start)
        self.lam_index = best
        scored = [held.images(i) for i in range(len(grid))]
        info.setdefault("lambda_selection", []).append(
            {"sparsity": sparsity, "grid": list(grid), "score": self.request.lambda_score,
             "holdout_loss": [held.loss(i) if scored[i] else None for i in range(len(grid))],
             "holdout_error": [held.error(i) if scored[i] else None for i in range(len(grid))],
             "holdout_images": scored, "chosen": grid[best]})
        return best

    def _chita(self, work, A, wbar, k, grid, info, sparsity, label):
        """λ: backsolves on the starting support scored on held-out calibration loss (K_S shared);
        then the mask search at the chosen λ, never ending above the magnitude backsolve."""
        first_order = self.first_order
        warm = self.warm
        mag_mask = select(wbar.abs(), k, self.groups, self.frozen)
        init = select(warm.free_values.abs(), k, self.groups, self.frozen) if warm is not None else mag_mask
        start = support_state(A, wbar, init, grid[0], first_order=first_order,
                              warm=warm.state if warm is not None else None)
        lam = grid[0]
        if len(grid) > 1:
            def backsolved(l):
                return lambda: support_weights(A, wbar, start, l, first_order=first_order)
            lam = grid[self._choose_lambda(work, grid, [backsolved(l) for l in grid], info,
                                           sparsity, label)]
        report(self.progress, "mask search", 0, 0, f"{label} CHITA at λ = {lam:.3g}".strip())
        sol = chita_solve(A, wbar, k, self.groups, lam, first_order=first_order, init_mask=init,
                          warm=start, progress=self.progress, cancel=self.cancel,
                          max_refresh=self.max_refresh or 100, frozen=self.frozen)
        info.setdefault("solver", []).append(
            {"sparsity": sparsity, "lam": lam, "iterations": sol.iterations, "swaps": sol.swaps,
             "converged": sol.converged, "objective": sol.objective,
             "start_objective": sol.start_objective, "seconds": sol.timings.get("solve")})
        best = self._not_worse_than_magnitude(A, wbar, k, (0.0, sol.weights, sol.mask,
                                                           list(sol.trace), lam, sol), info, sparsity,
                                              init, mag_mask)
        self.warm = best[5]  # the next (sparser) solve starts from this one, K_S reused
        return best[1], best[2], best[3], best[4]

    def _woodfisher(self, work, A, wbar, k, grid, info, sparsity, label):
        """WoodFisher at each λ of the grid, the best on held-out calibration loss.

        K = AAᵀ and diag(F_λ⁻¹) for the whole grid come from two passes over G; each λ the walk
        scores then costs a mask selection and a rank update of the previous λ's backsolve."""
        runs: dict[int, object] = {}
        if self.fisher_inverse is None or self.fisher_inverse[0] != tuple(grid):
            # AAᵀ and the diagonals depend on G and λ only: a sweep's sparsities share them
            report(self.progress, "WoodFisher", 0, 0, f"{label} Gram matrix AAᵀ".strip())
            K = LocalQuadratic(A, wbar, grid[0]).gram()
            finv = inverse_fisher_diagonals(A, K, grid, cancel=self.cancel, progress=self.progress)
            self.fisher_inverse = (tuple(grid), K, finv)
            if self.derived is not None and A is self.A:  # kept with this G for the next run
                self.derived["fisher_inverse"] = self.fisher_inverse
        _, K, finv = self.fisher_inverse
        last: list = [None]  # the previous solve's backsolve state: the next one's warm start

        def run(i: int):
            if i not in runs:  # only the λ the walk scores are solved
                check(self.cancel)
                runs[i] = woodfisher_solve(A, wbar, k, self.groups, grid[i], K=K, finv=finv[i],
                                           warm=last[0], cancel=self.cancel, frozen=self.frozen)
                last[0] = runs[i].state
            return runs[i]

        i = 0 if len(grid) == 1 else self._choose_lambda(
            work, grid, [(lambda i=i: run(i).weights) for i in range(len(grid))], info, sparsity, label)
        sol = run(i)
        return sol.weights, sol.mask, [sol.objective], grid[i]

    def _scale_update(self, work, w, mask, timings, info, sparsity, recalibrated=None):
        """The kept weights moved by α times the method's update, w̄ + α(w − w̄) (pruned ones zero).

        ``request.update_scale`` fixes α (1, the default: the whole update, as the papers take
        it); ``None`` chooses it when BatchNorm is not recalibrated: a walk from α = 1 down
        ``UPDATE_SCALES`` while the held-out error falls (ties broken by the loss), every
        candidate scored on all held-out images (``info["update_scale"]``). ``recalibrated``:
        whether BatchNorm is recalibrated on these weights (default: whether the run
        recalibrates; a CHITA++ stage passes whether a recalibration follows it)."""
        fixed = self.request.update_scale
        if fixed == 1.0:
            return w
        recal = self.recal if recalibrated is None else recalibrated
        if fixed is None and (recal or not len(self.x_h)):
            info["update_scale"] = {"sparsity": sparsity, "chosen": 1.0, "kept_whole": (
                "BatchNorm is recalibrated" if recal else "no held-out images")}
            return w
        t0 = time.perf_counter()
        wbar = _flat(work, self.names)
        keep = mask.to(w.dtype)

        def scaled(a: float) -> torch.Tensor:
            return keep * (wbar + a * (w - wbar))

        if fixed is not None:
            info["update_scale"] = {"sparsity": sparsity, "chosen": float(fixed)}
            return scaled(float(fixed))
        scales = UPDATE_SCALES
        trials: dict[int, nn.Module] = {}
        score = self._holdout_scorer(work, [(lambda a=a: scaled(a)) for a in scales], trials,
                                     "update scale", [f"α = {a:g}" for a in scales])
        held = PairedHoldout(score, len(self.x_h), batch=HOLDOUT_BATCH, first=HOLDOUT_BATCH, z=math.inf)
        best = walk_grid_by(_lower_error(held, trials), len(scales), 0)
        scored = [held.images(i) > 0 for i in range(len(scales))]
        info["update_scale"] = {
            "sparsity": sparsity, "grid": list(scales), "chosen": scales[best],
            "holdout_error": [held.error(i) if scored[i] else None for i in range(len(scales))],
            "holdout_loss": [held.loss(i) if scored[i] else None for i in range(len(scales))]}
        timings["update_scale"] = timings.get("update_scale", 0.0) + time.perf_counter() - t0
        return w if scales[best] == 1.0 else scaled(scales[best])

    def _not_worse_than_magnitude(self, A, wbar, k, best, info, sparsity, init, mag_mask):
        """At the chosen λ, compare with the backsolve on the magnitude mask ``mag_mask`` (a
        rank update from the solution); if a warm start ended above it, solve again from
        magnitude. A search that started on the magnitude mask already measured it: its start
        objective."""
        loss, w, mask, trace, lam, sol = best
        if torch.equal(init, mag_mask):
            mag_objective = sol.start_objective
        else:
            mag = support_state(A, wbar, mag_mask, lam, first_order=self.first_order,
                                warm=sol.state)
            mag_objective = mag.objective
        if mag_objective < sol.objective:
            sol = chita_solve(A, wbar, k, self.groups, lam, first_order=self.first_order,
                              init_mask=mag_mask, warm=sol.state, cancel=self.cancel, frozen=self.frozen)
            w, mask, trace = sol.weights, sol.mask, list(sol.trace)
        agree = float((mask & mag_mask).sum()) / max(1, int(mag_mask.sum()))
        # a floor under every support's objective (not defined with the first-order term)
        floor = objective_lower_bound(wbar, k, self.groups, lam, magnitude=mag_mask) \
            if isinstance(self.first_order, bool) and not self.first_order else None
        info.setdefault("final", []).append(
            {"sparsity": sparsity, "lam": lam, "objective": sol.objective,
             "magnitude_objective": mag_objective, "objective_lower_bound": floor,
             "iterations": sol.iterations, "converged": sol.converged,
             "magnitude_mask_kept": agree})
        return (loss, w, mask, trace, lam, sol)

    def _refine(self, work: nn.Module, mask: torch.Tensor, timings: dict[str, float],
                info: dict[str, object]) -> bool:
        """Up to ``refine_steps`` damped Gauss–Newton steps on ``work``'s kept weights, in place.

        When the run recalibrates BatchNorm, the recalibration decision (kept only if it lowers
        held-out loss) is made first, on the pruned network, and again after every step taken.
        Each step (:meth:`_refine_step`) is scored on the network as it stands, statistics
        included, and taken only if it lowers held-out calibration loss; the first step that
        does not ends the refinement. The log goes to ``info["refinement"]``. Returns whether the
        recalibration decision was made here (then :meth:`_finish` does not make it again).
        """
        steps = self.request.refine_steps
        if steps <= 0 or not len(self.x_h):
            return False
        t_start = time.perf_counter()
        log: list[dict[str, object]] = []
        saved, self.holdout_recal = self.holdout_recal, False  # score the network as it stands
        try:
            if self.recal:  # the decision measures the held-out loss of what it keeps
                decision = info["recalibration"] = self._maybe_recalibrate(work, timings)
                current = float(decision["holdout_loss_after" if decision["applied"]
                                         else "holdout_loss_before"])
            else:
                current = _mean_loss(work, self.x_h, self.y_h)
            start = LAMBDA_GRID.index(1.0)
            for step in range(steps):
                t0 = time.perf_counter()
                loss, w, (lam, factor), scored = self._refine_step(
                    work, mask, start, f"refinement step {step + 1}/{steps}", step, steps)
                accepted = loss < current
                entry = {"lam": lam, "holdout_loss_before": current, "accepted": accepted,
                         "holdout_loss_by_lam": scored}
                log.append(entry)
                self.stage_units += 1
                if accepted:
                    _write(work, self.names, w)
                    current, start = loss, LAMBDA_GRID.index(factor)  # the next walk starts here
                    if self.recal:  # new weights: are new statistics better still?
                        decision = self._maybe_recalibrate(work, timings)
                        entry["recalibration"] = decision
                        if decision["applied"]:
                            current = float(decision["holdout_loss_after"])
                entry["holdout_loss_after"] = current
                entry["seconds"] = time.perf_counter() - t0
                if not accepted:
                    self.stage_units += steps - step - 1
                    break
        finally:
            self.holdout_recal = saved
        info["refinement"] = log
        timings["refine"] = timings.get("refine", 0.0) + time.perf_counter() - t_start
        return self.recal

    def _refine_step(self, work: nn.Module, mask: torch.Tensor, start: int, label: str,
                     step: int, steps: int):
        """One candidate step: gradients at ``work`` on the kept columns only, from every
        calibration image but the held-out ones (n rows, ``refine_per_row`` images each), then
        a walk over the λ grid (× the support's mean Fisher diagonal) on held-out calibration
        loss. Returns (best held-out loss, its flat weights, (λ, grid factor), {λ: loss scored})."""
        check(self.cancel)
        report(self.progress, "refining", step, steps, label)
        flat = _flat(work, self.names)
        ff = fisher_factor(work, self.x_r, self.y_r, self.names, images_per_row=self.refine_per_row,
                           columns=mask, progress=self.progress, cancel=self.cancel)
        gn = GaussNewtonStep(ff.A, flat[mask], c=ff.c)
        grid = [g * gn.scale for g in LAMBDA_GRID]
        losses: dict[int, float] = {}
        candidates: dict[int, torch.Tensor] = {}

        def score(i: int) -> float:
            check(self.cancel)
            report(self.progress, "refining", step, steps, f"{label}: λ = {grid[i]:.3g}")
            trial = flat.clone()
            trial[mask] = gn.weights(grid[i])[0]
            candidates[i] = trial
            losses[i] = self._holdout_loss(work, trial)
            return losses[i]

        best = walk_grid(score, len(grid), start)
        return losses[best], candidates[best], (grid[best], LAMBDA_GRID[best]), \
            {grid[i]: losses[i] for i in sorted(losses)}

    def _holdout_scorer(self, work: nn.Module, candidates: list[Callable[[], torch.Tensor]],
                        trials: dict[int, nn.Module], what: str, labels: list[str]):
        """``score(i, start, stop)`` for :class:`PairedHoldout`: candidate ``i``'s weights
        (made on first use, kept in ``trials`` as a model copy) scored on held-out images."""
        def score(i: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
            check(self.cancel)
            if i not in trials:
                report(self.progress, what, len(trials), len(candidates), labels[i])
                trials[i] = self._holdout_model(work, candidates[i]())
            return self._holdout_batch(trials[i], start, stop)
        return score

    def _holdout_loss(self, work: nn.Module, w: torch.Tensor) -> float:
        """Held-out calibration loss with weights ``w`` (BatchNorm recalibrated first when the
        run recalibrates)."""
        return self._holdout_metrics(work, w)[0]

    def _holdout_model(self, work: nn.Module, w: torch.Tensor) -> nn.Module:
        """A copy of ``work`` with weights ``w``, its BatchNorm recalibrated first when the run
        recalibrates: what the held-out loss of ``w`` is measured on."""
        trial = copy.deepcopy(work)
        _write(trial, self.names, w)
        if self.recal if self.holdout_recal is None else self.holdout_recal:
            recalibrate_batchnorm(trial, self.bn_images[:RECAL_CHECK], transform=self.bn_transform)
        return trial

    def _holdout_batch(self, trial: nn.Module, start: int, stop: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image loss and 0/1 error of ``trial`` on held-out images ``[start, stop)``."""
        return _per_image_loss_and_error(trial, self.x_h[start:stop], self.y_h[start:stop])

    def _holdout_metrics(self, work: nn.Module, w: torch.Tensor) -> tuple[float, float]:
        """Held-out calibration loss and error rate with weights ``w`` (BatchNorm recalibrated
        first when the run recalibrates)."""
        if not len(self.x_h):
            return 0.0, 0.0
        return _loss_and_error(self._holdout_model(work, w), self.x_h, self.y_h)

    def _maybe_recalibrate(self, work: nn.Module, timings: dict[str, float]) -> dict[str, object]:
        """Recalibrate ``work``'s BatchNorm in place if that lowers held-out calibration loss
        (at low sparsity, or between CHITA++ stages, the stored statistics can beat ones from a
        few thousand calibration images). Returns what was measured and decided."""
        t1 = time.perf_counter()
        trial = copy.deepcopy(work)
        recalibrate_batchnorm(trial, self.bn_images, cancel=self.cancel, transform=self.bn_transform)
        decision: dict[str, object] = {"applied": True}
        if len(self.x_h):
            before = _mean_loss(work, self.x_h, self.y_h)
            after = _mean_loss(trial, self.x_h, self.y_h)
            decision = {"holdout_loss_before": before, "holdout_loss_after": after,
                        "applied": after < before}
        if decision["applied"]:
            work.load_state_dict(trial.state_dict())
        timings["batchnorm"] = timings.get("batchnorm", 0.0) + time.perf_counter() - t1
        return decision

    def _finish(self, work: nn.Module, timings: dict[str, float], info: dict[str, object],
                recalibrated: bool = False) -> dict[str, torch.Tensor]:
        """Recalibrate BatchNorm after pruning (when on and when it helps held-out loss) and
        return the buffers to apply."""
        if self.recal and not recalibrated:
            info["recalibration"] = self._maybe_recalibrate(work, timings)
        if self.recal or self.info.get("bn_refreshed_before"):
            return {k_: v.detach().clone() for k_, v in work.named_buffers()
                    if k_.endswith(("running_mean", "running_var", "num_batches_tracked"))}
        return {}

    def _result(self, sparsity, work, mask, trace, lam, timings, info, buffers) -> PruneResult:
        flat = _flat(work, self.names)
        weights, masks, layer_sparsity = {}, {}, {}
        for name, sl, shape in zip(self.names, self.groups, self.shapes):
            weights[name] = flat[sl].view(shape).clone()
            masks[name] = mask[sl].view(shape).clone()
            layer_sparsity[name] = 1.0 - float(mask[sl].sum()) / (sl.stop - sl.start)
        info["recalibrated"] = bool(self.recal)
        info["has_batchnorm"] = bool(self.bn)
        if not self.bn and scripted_batchnorm(self.base):
            info["bn_torchscript"] = True
        all_timings = {**self.timings_shared, **timings}
        # the shared work before pruning (BatchNorm refresh) is part of this result's cost
        all_timings["total"] = timings.get("total", 0.0) + self.timings_shared.get("batchnorm_before", 0.0)
        return PruneResult(request=replace(self.request, sparsity=sparsity), weights=weights,
                           masks=masks, layer_sparsity=layer_sparsity,
                           nonzeros=int(mask.sum()), total=self.p,
                           objective_trace=tuple(trace), timings=all_timings, lam=lam,
                           buffers=buffers, info=info)


def _lower_error(held: PairedHoldout, trials: dict[int, nn.Module]) -> Callable[[int, int], bool]:
    """A walk's comparison by held-out error, the loss breaking ties, both candidates scored on
    every held-out image; the loser's model copy is dropped from ``trials``."""
    def less(c: int, b: int) -> bool:
        held.evaluate(b)
        held.evaluate(c)
        better = (held.error(c), held.loss(c)) < (held.error(b), held.loss(b))
        trials.pop(b if better else c, None)
        return better
    return less


def describe_update_scale(info: Mapping[str, object]) -> str:
    """One line on a CHITA or WoodFisher run's update scale α (``PruneRequest.update_scale``),
    or "" when the whole update was taken by default."""
    stages = info.get("update_scale_stages")
    if isinstance(stages, list) and stages:
        alphas = [float(r["chosen"]) for r in stages]
        if all("grid" not in r and "kept_whole" not in r for r in stages):
            return f"α = {alphas[0]:g} of the weight update at every CHITA++ stage (fixed)."
        damped = sum(a < 1.0 for a in alphas)
        return (f"α chosen per CHITA++ stage on held-out calibration error: {damped} of "
                f"{len(alphas)} stages took less than the whole update (mean α "
                f"{sum(alphas) / len(alphas):.2f}).")
    rec = info.get("update_scale")
    if not isinstance(rec, Mapping):
        return ""
    alpha = float(rec["chosen"])
    if "kept_whole" in rec:
        return f"α = 1, the whole weight update: auto keeps it when {rec['kept_whole']}."
    if "grid" not in rec:
        return f"α = {alpha:g} of the weight update on the kept weights (fixed)."
    errors = rec["holdout_error"]
    i = list(rec["grid"]).index(rec["chosen"])
    text = (f"α = {alpha:g} of the weight update on the kept weights, chosen on held-out calibration "
            f"error ({100 * errors[i]:.1f}%")
    if i != 0 and errors[0] is not None:
        text += f" against {100 * errors[0]:.1f}% for the whole update"
    return text + ")."


def apply_result(model: nn.Module, result: PruneResult) -> nn.Module:
    """A pruned deep copy of ``model`` with the result's weights and BatchNorm buffers."""
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    bufs = dict(out.named_buffers())
    with torch.no_grad():
        for name, w in result.weights.items():
            params[name].copy_(w)
        for name, b in result.buffers.items():
            if name in bufs:
                bufs[name].copy_(b)
    set_eval_mode(out)
    return out


def stages_hint(method: str, versus_dense: PairedDifference | None,
                versus_magnitude: PairedDifference | None) -> str:
    """A pointer to CHITA++ after a single-stage CHITA run that clearly loses to the dense model
    and is not clearly ahead of magnitude at the same sparsity (two
    :class:`core.evaluate.PairedDifference`, either None where not measured), else "".
    There one step leaves the local quadratic's range, and CHITA++ takes it in stages
    (docs/benchmarks.md: ResNet20 at 80–90%, MLPNet at 98%)."""
    if method != "chita" or versus_dense is None or versus_magnitude is None:
        return ""
    if not versus_dense.ci[1] < 0.0 or versus_magnitude.ci[0] > 0.0:
        return ""
    return ("Not clearly ahead of magnitude here: one step this large leaves the local quadratic's "
            "range. CHITA++ takes it in stages, with gradients recomputed at each, for several times "
            "this run's time.")


def describe_samples(info: Mapping[str, object]) -> str | None:
    """Why a run took fewer gradient rows than its request asked for, or ``None``: e.g. "1,133
    gradient rows, not the 5,000 asked: the calibration set holds 1,258 images, and 125 of them
    are held out"."""
    if "samples_asked" not in info:
        return None
    rows, asked = int(info["samples"]), int(info["samples_asked"])
    total, held = int(info["calibration_images"]), int(info.get("holdout", 0))
    return (f"{rows:,} gradient rows, not the {asked:,} asked: the calibration set holds "
            f"{total:,} images, and {held:,} of them are held out")


def saliency(model: nn.Module, calibration: "ImageSet", *, samples: int = 256,
             layers: list[str] | None = None, arch: str | None = None,
             progress: ProgressFn | None = None,
             cancel: CancelToken | None = None) -> dict[str, torch.Tensor]:
    """Per-weight empirical-Fisher saliency ½·F_jj·w_j², Hessian-free from per-sample gradients."""
    names = list(layers) if layers else default_layers(model, arch)
    n = min(samples, len(calibration.x))
    fdiag = streamed_fisher_diagonal(model, calibration.x[:n], calibration.y[:n], names,
                                     progress=progress, cancel=cancel)  # any network size: G is never held
    sal = 0.5 * fdiag * _flat(model, names) ** 2
    params = dict(model.named_parameters())
    out, off = {}, 0
    for nm in names:
        size = params[nm].numel()
        out[nm] = sal[off:off + size].view(params[nm].shape).clone()
        off += size
    return out
