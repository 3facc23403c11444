"""OBD (LeCun et al., 1990) with the empirical Fisher's diagonal as the Hessian.

Saliency of weight j: ρ_j = ½ F_jj w̄_j², F_jj = (1/n) Σ_i G_ij². Keep the k largest;
no weight update (the diagonal model has none).
"""

from __future__ import annotations

import torch

from core.fisher import fisher_diagonal
from core.methods.selection import Budget, select


def obd_saliency(G: torch.Tensor, wbar: torch.Tensor, damp: float = 0.0) -> torch.Tensor:
    """ρ_j = ½ (F_jj + damp) w̄_j² for every weight."""
    return 0.5 * (fisher_diagonal(G) + damp) * wbar.reshape(-1) ** 2


def obd_prune(G: torch.Tensor, wbar: torch.Tensor, k: Budget, groups: list[slice],
              damp: float = 0.0, frozen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weights, mask): keep the k most salient weights, unchanged. ``frozen`` (the
    model's own zeros) are never kept: their saliency 0 ties with weights whose Fisher
    diagonal is 0 (inputs that never fire), and keeping a zero would count it as kept."""
    wbar = wbar.reshape(-1)
    mask = select(obd_saliency(G, wbar, damp), k, groups, frozen)
    return torch.where(mask, wbar, torch.zeros_like(wbar)), mask
