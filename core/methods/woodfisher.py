"""WoodFisher / OBS (Singh & Alistarh, 2020; Hassibi & Stork, 1993) with F⁻¹ by Woodbury.

Dampened Fisher F_λ = AᵀA + λI (A = G/√n). Its inverse is never formed:

    F_λ⁻¹ = (1/λ)(I − Aᵀ(K + λI)⁻¹A),   K = AAᵀ (n×n)

so [F_λ⁻¹]_jj = (1 − q_j)/λ with q_j = a_jᵀ(K + λI)⁻¹a_j, computed for all p weights from
the eigendecomposition K = VΛVᵀ: q_j = Σ_m (Vᵀa_j)_m² / (Λ_m + λ).

OBS saliency of removing weight j: ρ_j = w̄_j² / (2[F_λ⁻¹]_jj). The k most salient weights are
kept, and the pruned ones are removed jointly with the OBS update
δw = −F⁻¹_{:,P}(F⁻¹_{PP})⁻¹ w̄_P, which on the quadratic model equals the least-squares
backsolve on the kept support (computed in n-space, :mod:`core.methods.quadratic`).
Only n×n matrices and passes over G are needed, so no block-wise approximation is required
for any G that fits in memory.
"""

from __future__ import annotations

import torch

from core.methods.quadratic import BLOCK, LocalQuadratic
from core.methods.selection import select
from core.progress import CancelToken, check


def inverse_fisher_diagonal(quad: LocalQuadratic, K: torch.Tensor | None = None,
                            cancel: CancelToken | None = None) -> torch.Tensor:
    """diag(F_λ⁻¹) = (1 − q)/λ for all p weights (float64)."""
    K = quad.gram() if K is None else K
    evals, V = torch.linalg.eigh(K)
    inv = 1.0 / (evals.clamp_min(0.0) + quad.lam)
    V32 = V.T.to(torch.float32).contiguous()
    q = torch.empty(quad.p, dtype=torch.float64)
    for j in range(0, quad.p, BLOCK):
        check(cancel)
        B = (V32 @ quad.A[:, j:j + BLOCK]).double()
        q[j:j + BLOCK] = (B * B * inv[:, None]).sum(0)
    return (1.0 - q).clamp_min(1e-12) / quad.lam


def woodfisher_prune(A: torch.Tensor, wbar: torch.Tensor, k: int | list[int],
                     groups: list[slice], lam: float, *, update: bool = True,
                     K: torch.Tensor | None = None, cancel: CancelToken | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Return (weights, mask, objective): OBS-saliency mask and the joint OBS update.

    ``K`` = AAᵀ may be passed when known (it does not depend on λ).
    """
    wbar = wbar.reshape(-1).to(torch.float32)
    quad = LocalQuadratic(A, wbar, lam)
    finv = inverse_fisher_diagonal(quad, K=K, cancel=cancel)
    saliency = wbar.double() ** 2 / (2.0 * finv)
    mask = select(saliency, k, groups)
    st = quad.state(mask)
    if update:
        return quad.weights(st), mask, st.objective
    return torch.where(mask, wbar, torch.zeros_like(wbar)), mask, st.objective
