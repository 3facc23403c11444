"""BatchNorm recalibration: recompute running statistics on calibration images.

Pruning shifts every layer's activation statistics, so BatchNorm's stored running mean and
variance go stale. Recalibration resets them and makes one pass over calibration images with
only the BatchNorm layers in train mode (cumulative average, no gradient, nothing else changes).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from core.evaluate import set_eval_mode
from core.progress import CancelToken, ProgressFn, check, report

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    """True if the model has any BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, *, batch_size: int = 128,
                          progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> dict[str, torch.Tensor]:
    """Recompute the running statistics of ``model``'s BatchNorm layers **in place** on
    ``images`` and return the new BatchNorm buffers (name → tensor). Call it on a copy.
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
            model(images[start:start + batch_size])
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
