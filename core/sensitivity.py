"""Layer sensitivity: how much each layer alone costs when it is pruned.

For each prunable layer and each sparsity s, the layer's s·p_l smallest |w| are set to zero,
every other layer is left whole, and the network is scored; then the layer is restored. The
change in loss and accuracy against the dense network (paired on the same images) says which
layers a run should keep dense or prune less (``PruneRequest.keep_first`` / ``keep_last``, the
app's table menu). Magnitude only, no BatchNorm recalibration: a quick, method-free scan.

It scores calibration images, never the evaluation (test) images, so that the layers a user
then chooses are not chosen on the images that report the result; the last ``images`` of the
calibration set are taken (a run's gradient rows and held-out images come from its start).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn as nn

from core.data import ImageSet
from core.evaluate import EvalResult, PairedDifference, evaluate, paired_difference
from core.methods.selection import topk_mask
from core.progress import CancelToken, ProgressFn, check, report

SENSITIVITY_IMAGES = 1000  # calibration images scored per point (the last ones of the set)


@dataclass(frozen=True)
class SensitivityRow:
    """One layer pruned alone at one sparsity: its score and the change against dense."""

    layer: str
    weights: int
    sparsity: float
    eval: EvalResult
    loss_change: float  # mean cross-entropy minus the dense network's, same images
    accuracy_change: PairedDifference  # accuracy minus the dense network's, paired


@dataclass(frozen=True)
class SensitivityResult:
    """Every layer × sparsity of a scan, the dense score, and the images scored."""

    rows: tuple[SensitivityRow, ...]
    dense: EvalResult
    images: str

    def ranked(self, sparsity: float) -> list[SensitivityRow]:
        """The rows at ``sparsity``, the costliest (largest loss increase) first."""
        return sorted((r for r in self.rows if abs(r.sparsity - sparsity) < 1e-12),
                      key=lambda r: r.loss_change, reverse=True)


def scan_images(calibration: ImageSet, images: int = SENSITIVITY_IMAGES) -> ImageSet:
    """The last ``images`` calibration images (all of them if there are fewer)."""
    start = max(0, len(calibration) - images)
    return replace(calibration, x=calibration.x[start:], y=calibration.y[start:],
                   indices=None if calibration.indices is None else calibration.indices[start:],
                   source=f"the last {len(calibration) - start:,} calibration images ({calibration.source})")


@torch.no_grad()
def layer_sensitivity(model: nn.Module, images: ImageSet, layers: Sequence[str],
                      sparsities: Sequence[float], *, progress: ProgressFn | None = None,
                      cancel: CancelToken | None = None) -> SensitivityResult:
    """Prune each of ``layers`` (parameter names) alone by magnitude at each of
    ``sparsities`` and score the network on ``images``. ``model`` is never modified (a copy
    is pruned and restored layer by layer). Stage ``"sensitivity"`` is reported per point;
    ``Cancelled`` is raised between points."""
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {s}")
    work = copy.deepcopy(model)
    params = dict(work.named_parameters())
    missing = [n for n in layers if n not in params]
    if missing:
        raise ValueError(f"the model has no parameters named {missing[:5]}")
    total = len(layers) * len(sparsities) + 1
    report(progress, "sensitivity", 0, total, "dense network")
    dense = evaluate(work, images, cancel=cancel)
    rows: list[SensitivityRow] = []
    done = 1
    for name in layers:
        p = params[name]
        original = p.detach().clone()
        flat = original.reshape(-1)
        for s in sparsities:
            check(cancel)
            report(progress, "sensitivity", done, total, f"{name} at {100 * s:.0f}%")
            keep = topk_mask(flat.abs(), max(0, min(flat.numel(), round((1.0 - s) * flat.numel()))))
            p.copy_(torch.where(keep, flat, torch.zeros_like(flat)).view_as(p))
            try:
                ev = evaluate(work, images, cancel=cancel)
            finally:
                p.copy_(original)
            rows.append(SensitivityRow(name, flat.numel(), float(s), ev, ev.loss - dense.loss,
                                       paired_difference(ev, dense)))
            done += 1
    report(progress, "sensitivity", total, total, "done")
    return SensitivityResult(tuple(rows), dense, images.source)
