"""BatchNorm recalibration: recompute running statistics on calibration images.

Pruning shifts every layer's activation statistics, so BatchNorm's stored running mean and
variance go stale. Recalibration resets them and makes one pass over calibration images with
only the BatchNorm layers in train mode (cumulative average, no gradient, nothing else changes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn as nn

from core.evaluate import set_eval_mode
from core.progress import CancelToken, ProgressFn, check, report

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    """True if the model has any BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


def scripted_batchnorm(model: nn.Module) -> bool:
    """True for a compiled model with BatchNorm: a TorchScript module (its BatchNorm layers are
    not nn.BatchNorm instances) or a ``.pt2`` graph (batch_norm operations, no modules). Their
    statistics are not recalibrated: they are used as stored."""
    if isinstance(model, torch.jit.ScriptModule):
        return any(getattr(m, "original_name", "") in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
                   for m in model.modules())
    if isinstance(model, torch.fx.GraphModule):
        return any("batch_norm" in str(node.target) for node in model.graph.nodes)
    return False


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, *, batch_size: int = 128,
                          transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                          progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> dict[str, torch.Tensor]:
    """Recompute the running statistics of ``model``'s BatchNorm layers **in place** on
    ``images`` and return the new BatchNorm buffers (name → tensor). Call it on a copy.
    ``transform(batch, batch_index)``, when given, augments each batch first (for example
    :class:`core.augment.CropFlip`, the augmentation the network's statistics were trained with).
    """
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns:
        return {}
    flags = [(m, m.training) for m in model.modules()]
    saved = [(m, m.momentum) for m in bns]
    set_eval_mode(model)
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the pass
        m.train()
    try:
        for start in range(0, len(images), batch_size):
            check(cancel)
            batch = images[start:start + batch_size]
            model(batch if transform is None else transform(batch, start // batch_size))
            report(progress, "batchnorm", min(start + batch_size, len(images)), len(images),
                   "recalibrating BatchNorm statistics")
    finally:
        for m, mom in saved:
            m.momentum = mom
        for m, flag in flags:
            m.training = flag
    names = {id(m): nm for nm, m in model.named_modules()}
    out = {}
    for m in bns:
        for b in ("running_mean", "running_var", "num_batches_tracked"):
            out[f"{names[id(m)]}.{b}"] = getattr(m, b).detach().clone()
    return out


def convs_into_batchnorm(model: nn.Module, x: torch.Tensor) -> set[str]:
    """Names of the ``Conv2d`` modules whose output tensor is fed straight into a ``BatchNorm2d``
    (found with hooks on one forward pass of two images of ``x``; nothing is changed)."""
    produced: dict[int, str] = {}
    found: set[str] = set()
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda _m, _i, out, name=name: produced.__setitem__(id(out), name)))
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
            hooks.append(m.register_forward_pre_hook(
                lambda _m, inp: found.add(produced[id(inp[0])]) if id(inp[0]) in produced else None))
    training = [(m, m.training) for m in model.modules()]
    set_eval_mode(model)
    try:
        with torch.no_grad():
            model(x[:2])
    finally:
        for h in hooks:
            h.remove()
        for m, flag in training:
            m.training = flag
    return found


@torch.no_grad()
def remove_channel_scale(A: torch.Tensor, model: nn.Module, names: list[str], groups: list[slice],
                         x: torch.Tensor) -> int:
    """Remove from every gradient row the directions that a BatchNorm recalibration makes free;
    **in place** on ``A`` (rows × p, the columns of ``names`` in ``groups``). Returns the number
    of output channels projected.

    A recalibrated BatchNorm normalises each channel by statistics measured after pruning, so
    scaling a convolution's output channel c, w_c → αw_c, scales its output, mean and deviation
    alike and leaves the network unchanged. Along ŵ_c = w̄_c/‖w̄_c‖ the loss after recalibration
    is flat, while gradients taken with the statistics fixed see curvature there. For every
    Conv2d that feeds a BatchNorm2d, each row's block g_c becomes g_c − (g_c·ŵ_c)ŵ_c, so the
    quadratic model no longer charges for moves the recalibration undoes.
    """
    convs = convs_into_batchnorm(model, x)
    params = dict(model.named_parameters())
    channels = 0
    for name, sl in zip(names, groups):
        if name.removesuffix(".weight") not in convs or not name.endswith(".weight"):
            continue
        W = params[name].detach()
        w_hat = W.reshape(W.shape[0], -1)
        w_hat = w_hat / w_hat.norm(dim=1, keepdim=True).clamp_min(1e-12)
        block = A[:, sl].view(A.shape[0], W.shape[0], -1)  # rows × channels × fan-in, a view
        block -= torch.einsum("ncf,cf->nc", block, w_hat)[..., None] * w_hat[None]
        channels += W.shape[0]
    return channels


def describe_batchnorm(info: Mapping[str, object]) -> str:
    """One line on what a pruning run did with BatchNorm's statistics, from its
    ``PruneResult.info`` ("" for a model without BatchNorm). The CLI and the GUI show it."""
    if not info.get("has_batchnorm"):
        if info.get("bn_torchscript"):
            return ("BatchNorm: statistics used as stored; a TorchScript or .pt2 model's "
                    "BatchNorm layers are not recalibrated (open the network's state_dict with "
                    "its architecture to recalibrate them).")
        return ""
    parts = []
    if info.get("bn_refreshed_before"):
        parts.append("stale statistics refreshed before pruning")
    if info.get("bn_augment") == "crop_flip":
        parts.append("statistics taken on randomly cropped and mirrored calibration images")
    decision = info.get("recalibration")
    if not info.get("recalibrated"):
        parts.append("statistics not recomputed after pruning (recalibration off)")
    elif isinstance(decision, Mapping) and "holdout_loss_after" in decision:
        before, after = float(decision["holdout_loss_before"]), float(decision["holdout_loss_after"])
        parts.append(f"statistics recomputed after pruning (held-out loss {before:.4g} → {after:.4g})"
                     if decision["applied"] else
                     f"statistics recomputed after pruning were declined (held-out loss {after:.4g} "
                     f"with them, {before:.4g} without)")
    elif isinstance(decision, Mapping) and decision.get("applied"):
        parts.append("statistics recomputed after pruning")
    if "bn_scale_free_channels" in info:
        parts.append(f"gradients without the scales of the {info['bn_scale_free_channels']} conv "
                     "channels a recalibration frees")
    if "bn_scale_free_declined" in info:
        parts.append("so the run was solved again on the gradients with the channel scales")
    return "BatchNorm: " + "; ".join(parts) + "." if parts else ""
