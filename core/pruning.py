"""Pruning requests and results, and the orchestration that runs a method on a model.

The GUI and CLI build a :class:`PruneRequest` and render a :class:`PruneResult`; they never reach
into the methods. :func:`prune` never modifies the model it is given.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.batchnorm import has_batchnorm, recalibrate_batchnorm
from core.errors import StudioError
from core.evaluate import set_eval_mode
from core.fisher import fisher_diagonal, per_sample_gradients
from core.methods.chita import chita_solve
from core.methods.magnitude import magnitude_prune
from core.methods.obd import obd_prune
from core.methods.selection import global_budget, layer_budgets
from core.methods.woodfisher import woodfisher_prune
from core.progress import CancelToken, ProgressFn, check, report
from core.prunable import prunable_parameters

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
    takes the model's preset (see :mod:`core.prunable`). ``samples`` is n, the number of
    per-sample gradient rows. ``lam`` is the ridge λ; ``None`` chooses it on held-out calibration
    loss. ``recalibrate_bn`` ``None`` means on for models with BatchNorm.
    """

    method: str = "chita"
    sparsity: float = 0.5
    scope: str = "global"
    layers: tuple[str, ...] | None = None
    samples: int = 1000
    seed: int = 0
    lam: float | None = None
    recalibrate_bn: bool | None = None
    stages: int = 0  # CHITA++ stages; 0 chooses a schedule whose last step is small
    first_order: bool = False


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


# ------------------------------------------------------------------------------------------
# Orchestration
# ------------------------------------------------------------------------------------------

NEEDS_GRADIENTS = {"chita", "chita++", "obd", "woodfisher"}
LAMBDA_GRID: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)  # × mean Fisher diagonal, large → small


def _validate(request: PruneRequest) -> None:
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


def default_layers(model: nn.Module, arch: str | None = None) -> list[str]:
    """The prunable weights a run uses when the request names none (literature preset)."""
    return prunable_parameters(model, arch, preset="literature")


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
def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    set_eval_mode(model)
    total = 0.0
    for i in range(0, len(x), batch):
        total += float(F.cross_entropy(model(x[i:i + batch]), y[i:i + batch], reduction="sum"))
    return total / max(1, len(x))


def chitapp_schedule(sparsity: float, stages: int) -> list[float]:
    """Rising sparsities for CHITA++, s_t = s·(1 − (1 − t/T)³): big early steps, a small last one."""
    T = max(1, stages)
    return [sparsity * (1.0 - (1.0 - t / T) ** 3) for t in range(1, T + 1)]


def prune(model: nn.Module, calibration: "ImageSet", request: PruneRequest, *,
          arch: str | None = None, progress: ProgressFn | None = None,
          cancel: CancelToken | None = None) -> PruneResult:
    """Run one pruning method on a copy of ``model`` and return the new weights and masks.

    Calibration images: the first ``request.samples`` give the gradient rows G; up to 1000 of
    the rest are held out to choose λ (never test images). ``model`` is never modified.
    """
    _validate(request)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    work = copy.deepcopy(model)
    set_eval_mode(work)
    names = list(request.layers) if request.layers else default_layers(work, arch)
    params = dict(work.named_parameters())
    bad = [n for n in names if n not in params]
    if bad:
        raise StudioError(f"the model has no parameters named {bad[:5]}", field="layers",
                          fix="use names from `chita-studio info MODEL`.")
    sizes = [params[n].numel() for n in names]
    groups, off = [], 0
    for s in sizes:
        groups.append(slice(off, off + s))
        off += s
    p = off

    x_all, y_all = calibration.x, calibration.y
    needs_g = request.method in NEEDS_GRADIENTS
    n = min(request.samples, len(x_all))
    if needs_g and len(x_all) - n < 64 and len(x_all) > 128:
        n = len(x_all) - max(64, len(x_all) // 10)  # keep some images to choose λ on
    x_g, y_g = x_all[:n], y_all[:n]
    x_h, y_h = x_all[n:n + 1000], y_all[n:n + 1000]
    bn = has_batchnorm(work)
    recal = bn if request.recalibrate_bn is None else (request.recalibrate_bn and bn)
    bn_images = x_all[: min(len(x_all), 2000)]
    info: dict[str, object] = {"samples": n, "holdout": len(x_h), "layers": len(names)}
    buffers: dict[str, torch.Tensor] = {}

    if bn and len(x_h):
        # refresh stale running statistics before pruning when that lowers held-out loss
        t0 = time.perf_counter()
        before = _mean_loss(work, x_h, y_h)
        trial = copy.deepcopy(work)
        recalibrate_batchnorm(trial, bn_images, cancel=cancel)
        after = _mean_loss(trial, x_h, y_h)
        if after < before:
            work = trial
            params = dict(work.named_parameters())
        info["bn_refreshed_before"] = bool(after < before)
        timings["batchnorm_before"] = time.perf_counter() - t0

    if request.method == "chita++":
        T = request.stages or 10
        schedule = chitapp_schedule(request.sparsity, T)
    else:
        schedule = [request.sparsity]
    trace: list[float] = []
    lam_used = None
    for stage, s in enumerate(schedule, 1):
        check(cancel)
        wbar = _flat(work, names)
        k: int | list[int] = (global_budget(p, s) if request.scope == "global"
                              else layer_budgets(sizes, s))
        stage_label = f"stage {stage}/{len(schedule)} (sparsity {s:.3f})" if len(schedule) > 1 else ""
        out = _run_method(request, work, names, wbar, k, groups, x_g, y_g, x_h, y_h,
                          bn_images if recal else None, timings, info, stage_label,
                          progress, cancel)
        w_new, mask, stage_trace, lam_used = out
        trace.extend(stage_trace)
        _write(work, names, w_new)
        if recal:
            t0 = time.perf_counter()
            buffers = recalibrate_batchnorm(work, bn_images, cancel=cancel)
            timings["batchnorm"] = timings.get("batchnorm", 0.0) + time.perf_counter() - t0
    check(cancel)
    flat = _flat(work, names)
    weights, masks, layer_sparsity = {}, {}, {}
    for name, sl in zip(names, groups):
        shape = params[name].shape
        weights[name] = flat[sl].view(shape).clone()
        masks[name] = mask[sl].view(shape).clone()
        layer_sparsity[name] = 1.0 - float(mask[sl].sum()) / (sl.stop - sl.start)
    if bn and not buffers and info.get("bn_refreshed_before"):
        buffers = {k_: v.detach().clone() for k_, v in work.named_buffers()
                   if k_.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    timings["total"] = time.perf_counter() - t_start
    info["recalibrated"] = bool(recal)
    report(progress, "done", 1, 1, "done")
    return PruneResult(request=request, weights=weights, masks=masks,
                       layer_sparsity=layer_sparsity, nonzeros=int(mask.sum()), total=p,
                       objective_trace=tuple(trace), timings=timings, lam=lam_used,
                       buffers=buffers, info=info)


def _run_method(request, work, names, wbar, k, groups, x_g, y_g, x_h, y_h, bn_images,
                timings, info, stage_label, progress, cancel):
    """One stage: returns (weights, mask, objective trace, λ)."""
    method = request.method
    if method in ("magnitude", "magnitude_layer"):
        if method == "magnitude_layer" and isinstance(k, int):
            k = layer_budgets([g.stop - g.start for g in groups], request.sparsity)
        w, mask = magnitude_prune(wbar, k, groups)
        return w, mask, [], None
    t0 = time.perf_counter()
    gm = per_sample_gradients(work, x_g, y_g, names, progress=progress, cancel=cancel)
    timings["gradients"] = timings.get("gradients", 0.0) + time.perf_counter() - t0
    A = gm.G.div_(math.sqrt(gm.G.shape[0]))  # A = G/√n, in place: no copy of G
    fbar = float(fisher_diagonal(A).mean()) * A.shape[0]  # mean diag(AᵀA)
    info["fisher_mean_diag"] = fbar
    if method == "obd":
        w, mask = obd_prune(A, wbar, k, groups)
        return w, mask, [], None
    if request.lam is not None:
        grid = [request.lam]
    else:
        grid = [g * fbar for g in LAMBDA_GRID]
    t0 = time.perf_counter()
    best = None
    evaluated = []
    warm = None
    for i, lam in enumerate(grid):
        check(cancel)
        report(progress, "solve", i, len(grid), f"{stage_label} λ = {lam:.3g}".strip())
        if method == "woodfisher":
            w, mask, obj = woodfisher_prune(A, wbar, k, groups, lam, cancel=cancel)
            trace = [obj]
        else:
            sol = chita_solve(A, wbar, k, groups, lam, first_order=request.first_order,
                              init_mask=warm, cancel=cancel)
            w, mask, trace = sol.weights, sol.mask, list(sol.trace)
            warm = sol.mask
            info.setdefault("solver", []).append(
                {"lam": lam, "iterations": sol.iterations, "swaps": sol.swaps,
                 "converged": sol.converged, "objective": sol.objective,
                 "magnitude_objective": sol.start_objective if i == 0 else None})
        if len(grid) == 1:
            best = (0.0, w, mask, trace, lam)
            break
        loss = _holdout_loss(work, names, w, x_h, y_h, bn_images)
        evaluated.append((lam, loss))
        if best is None or loss < best[0]:
            best = (loss, w, mask, trace, lam)
    timings["solve"] = timings.get("solve", 0.0) + time.perf_counter() - t0
    if evaluated:
        info.setdefault("lambda_selection", []).append(
            {"grid": [lam for lam, _ in evaluated], "holdout_loss": [l for _, l in evaluated],
             "chosen": best[4]})
    return best[1], best[2], best[3], best[4]


def _holdout_loss(work, names, w, x_h, y_h, bn_images) -> float:
    """Held-out calibration loss of the network with weights ``w`` (BatchNorm recalibrated
    first when the run recalibrates)."""
    trial = copy.deepcopy(work)
    _write(trial, names, w)
    if bn_images is not None:
        recalibrate_batchnorm(trial, bn_images)
    return _mean_loss(trial, x_h, y_h)


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


def saliency(model: nn.Module, calibration: "ImageSet", *, samples: int = 256,
             layers: list[str] | None = None, arch: str | None = None,
             progress: ProgressFn | None = None,
             cancel: CancelToken | None = None) -> dict[str, torch.Tensor]:
    """Per-weight empirical-Fisher saliency ½·F_jj·w_j², Hessian-free from per-sample gradients."""
    names = list(layers) if layers else default_layers(model, arch)
    n = min(samples, len(calibration.x))
    gm = per_sample_gradients(model, calibration.x[:n], calibration.y[:n], names,
                              progress=progress, cancel=cancel)
    sal = 0.5 * fisher_diagonal(gm.G) * _flat(model, names) ** 2
    params = dict(model.named_parameters())
    return {nm: sal[sl].view(params[nm].shape).clone() for nm, sl in zip(names, gm.slices)}
