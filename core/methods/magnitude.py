"""Magnitude pruning: keep the k largest |w̄| (global budget or the same sparsity per layer)."""

from __future__ import annotations

import torch

from core.methods.selection import Budget, select


def magnitude_mask(wbar: torch.Tensor, k: Budget, groups: list[slice],
                   frozen: torch.Tensor | None = None) -> torch.Tensor:
    """Mask of the largest |w̄|: globally for int ``k``, per group for a list of budgets, per
    block for N:M; never a ``frozen`` weight (the model's own zeros)."""
    return select(wbar.abs(), k, groups, frozen)


def magnitude_prune(wbar: torch.Tensor, k: Budget, groups: list[slice],
                    frozen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weights, mask): w̄ on the kept set, zero elsewhere; no weight update."""
    mask = magnitude_mask(wbar, k, groups, frozen)
    return torch.where(mask, wbar, torch.zeros_like(wbar)), mask
