"""WoodFisher / OBS (Singh & Alistarh, 2020; Hassibi & Stork, 1993) with F⁻¹ by Woodbury.

Dampened Fisher F_λ = AᵀA + λI (A = G/√n). Its inverse is never formed:

    F_λ⁻¹ = (1/λ)(I − Aᵀ(K + λI)⁻¹A),   K = AAᵀ (n×n)

so [F_λ⁻¹]_jj = (1 − q_j)/λ with q_j = a_jᵀ(K + λI)⁻¹a_j, computed for all p weights from
the eigendecomposition K = VΛVᵀ: q_j = Σ_m (Vᵀa_j)_m² / (Λ_m + λ). Neither V nor Λ depends on
λ, so one pass over A gives the diagonal for every λ of a grid
(:func:`inverse_fisher_diagonals`).

OBS saliency of removing weight j: ρ_j = w̄_j² / (2[F_λ⁻¹]_jj). The k most salient weights are
kept, and the pruned ones are removed jointly with the OBS update
δw = −F⁻¹_{:,P}(F⁻¹_{PP})⁻¹ w̄_P, which on the quadratic model equals the least-squares
backsolve on the kept support (computed in n-space, :mod:`core.methods.quadratic`).
Only n×n matrices and passes over G are needed, so no block-wise approximation is required
for any G that fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from core.methods.quadratic import LocalQuadratic, SupportState
from core.methods.selection import Budget, select
from core.progress import CancelToken, ProgressFn, check, report

DIAG_BLOCK = 8192  # columns per block of the pass that projects A on K's eigenvectors


def inverse_fisher_diagonals(A: torch.Tensor, K: torch.Tensor, lams: Sequence[float],
                             cancel: CancelToken | None = None,
                             progress: ProgressFn | None = None) -> torch.Tensor:
    """diag(F_λ⁻¹) for every λ in ``lams``: a (len(lams), p) float64 tensor, one pass over A.

    ``K`` = AAᵀ (n×n). Costs one eigendecomposition of K and n²·p flops for Vᵀa_j, whatever
    the number of λ; each λ adds only n·p.
    """
    evals, V = torch.linalg.eigh(K)
    lam = torch.tensor([float(v) for v in lams], dtype=torch.float64)
    inv = 1.0 / (evals.clamp_min(0.0)[None, :] + lam[:, None])  # (L, n)
    V32 = V.T.to(torch.float32).contiguous()
    p = A.shape[1]
    q = torch.empty(len(lam), p, dtype=torch.float64)
    for j in range(0, p, DIAG_BLOCK):
        check(cancel)
        report(progress, "inverse Fisher", j, p, f"inverse Fisher diagonal {j:,}/{p:,} weights")
        B = (V32 @ A[:, j:j + DIAG_BLOCK]).double()
        q[:, j:j + DIAG_BLOCK] = inv @ B.square_()
    return (1.0 - q).clamp_min(1e-12) / lam[:, None]


def inverse_fisher_diagonal(quad: LocalQuadratic, K: torch.Tensor | None = None,
                            cancel: CancelToken | None = None) -> torch.Tensor:
    """diag(F_λ⁻¹) = (1 − q)/λ for all p weights (float64), at the quadratic's λ."""
    K = quad.gram() if K is None else K
    return inverse_fisher_diagonals(quad.A, K, [quad.lam], cancel=cancel)[0]


@dataclass(frozen=True)
class WoodFisherSolution:
    """OBS weights (updated, or w̄ on the mask), the mask, the objective and the backsolve state."""

    weights: torch.Tensor
    mask: torch.Tensor
    objective: float
    state: SupportState


def woodfisher_solve(A: torch.Tensor, wbar: torch.Tensor, k: Budget,
                     groups: list[slice], lam: float, *, update: bool = True,
                     K: torch.Tensor | None = None, finv: torch.Tensor | None = None,
                     warm: SupportState | None = None,
                     cancel: CancelToken | None = None,
                     frozen: torch.Tensor | None = None) -> WoodFisherSolution:
    """OBS-saliency mask and the joint OBS update at one λ.

    ``K`` = AAᵀ and ``finv`` = diag(F_λ⁻¹) may be passed when known (K does not depend on λ;
    :func:`inverse_fisher_diagonals` gives ``finv`` for a whole grid). ``warm``, a backsolve
    state at the same A on a nearby mask (e.g. another λ's), is updated by the columns that
    differ instead of building K_S afresh; with ``K`` and no warm state, K_S = K − K_{Sᶜ}
    when fewer weights are pruned than kept. ``frozen`` weights (the model's own zeros) are
    never kept.
    """
    wbar = wbar.reshape(-1).to(torch.float32)
    quad = LocalQuadratic(A, wbar, lam)
    if finv is None:
        finv = inverse_fisher_diagonal(quad, K=K, cancel=cancel)
    mask = select(wbar.double() ** 2 / (2.0 * finv), k, groups, frozen)
    check(cancel)
    kept, pruned = int(mask.sum()), int((~mask).sum())
    changed = int((warm.mask != mask).sum()) if warm is not None else -1
    if warm is not None and changed < min(kept, pruned):
        st = quad.swap(warm, (mask & ~warm.mask).nonzero().squeeze(1),
                       (warm.mask & ~mask).nonzero().squeeze(1))
    elif K is not None and pruned < kept:
        st = quad.state(mask, K=K - quad.gram(~mask))
    else:
        st = quad.state(mask)
    w = quad.weights(st) if update else torch.where(mask, wbar, torch.zeros_like(wbar))
    return WoodFisherSolution(w, mask, st.objective, st)


def woodfisher_prune(A: torch.Tensor, wbar: torch.Tensor, k: Budget,
                     groups: list[slice], lam: float, *, update: bool = True,
                     K: torch.Tensor | None = None, cancel: CancelToken | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Return (weights, mask, objective): OBS-saliency mask and the joint OBS update.

    ``K`` = AAᵀ may be passed when known (it does not depend on λ).
    """
    sol = woodfisher_solve(A, wbar, k, groups, lam, update=update, K=K, cancel=cancel)
    return sol.weights, sol.mask, sol.objective
