"""The local quadratic model of the loss, worked in the n-dimensional sample space.

Notation (Benbaki et al., 2023): w̄ ∈ ℝᵖ the dense weights, G ∈ ℝⁿˣᵖ the per-sample gradients,
A = G/√n so that the empirical Fisher is F = AᵀA, λ the ridge. For a candidate w (d = w − w̄)

    Q(w) = ½‖A d‖² + (λ/2)‖d‖² + gᵀd,          g = Aᵀc (first-order term, optional)

which is the paper's ½‖G(w̄ − w)‖² + (nλ/2)‖w − w̄‖² divided by n. With c = 𝟙/√n,
g is the mean gradient; with c = 0 the model is purely second order.

With mini-batch-averaged rows A is not G/√n but :func:`core.fisher.fisher_factor`'s factor
(centred rows and a mean row), still with AᵀA = F and Aᵀc = g for its own c.

Backsolve on a support S (w zero off S), by the Woodbury identity (never a p×p matrix):

    e   = −A_{Sᶜ} w̄_{Sᶜ} + c                     (n)
    u   = (K_S + λI)⁻¹ e,   K_S = A_S A_Sᵀ        (n×n)
    w_S = w̄_S − A_Sᵀ u
    Q*  = (λ/2)(eᵀu + ‖w̄_{Sᶜ}‖²) − ½‖c‖²

and v = w̄ − Aᵀu is, off S, the value each pruned weight would take if it were freed
(the IHT step with η = 1/λ lands exactly on v). Costs: K_S is n²·|S| flops once, then
rank-m updates; each v is one pass over G.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.errors import StudioError

BLOCK = 32768  # columns per block in passes over A
SCALE_FLOOR = 1e-30  # the smallest Fisher scale a λ grid is built on


def fisher_scale(A: torch.Tensor) -> float:
    """The mean diagonal of the empirical Fisher AᵀA, ‖A‖²_F / p: the scale of λ grids.

    Floored at ``SCALE_FLOOR``: where every gradient vanishes (a calibration set the network
    fits with probability 1 in float32, or a dead network) the quadratic is the ridge alone,
    every positive λ gives the same weights, and a grid of zeros would not be a ridge at all.
    """
    scale = float(torch.linalg.vector_norm(A)) ** 2 / max(1, A.shape[1])
    if not math.isfinite(scale):
        raise StudioError("The per-sample gradients on the calibration images are not finite "
                          "(NaN or infinite): the model's loss overflows on them.",
                          field="calibration data",
                          fix="Check the model on these images (chita-studio eval, or the dense "
                          "accuracy in the app) and the normalisation preset.")
    return max(scale, SCALE_FLOOR)


@dataclass
class SupportState:
    """The backsolve on one support: mask, Gram K_S (+λI not included), e, u, objective."""

    mask: torch.Tensor  # bool (p,)
    K: torch.Tensor  # float64 (n, n) = A_S A_Sᵀ
    e: torch.Tensor  # float64 (n,)
    wbar_off_sq: float  # ‖w̄_{Sᶜ}‖²
    u: torch.Tensor  # float64 (n,)
    objective: float
    chol: torch.Tensor  # float64 (n, n): lower Cholesky factor of K_S + λI


class LocalQuadratic:
    """Q(w) for fixed A, w̄, λ (and optional first-order vector c), with n-space solves."""

    def __init__(self, A: torch.Tensor, wbar: torch.Tensor, lam: float,
                 first_order: bool | torch.Tensor = False) -> None:
        """``first_order``: False for no first-order term, True for c = 𝟙/√n (for A = G/√n,
        Aᵀc is the mean gradient), or c itself (length n), e.g. :func:`core.fisher.fisher_factor`'s."""
        if A.dim() != 2 or A.shape[1] != wbar.numel():
            raise ValueError(f"A {tuple(A.shape)} does not match w̄ of {wbar.numel()} entries")
        if lam <= 0:
            raise ValueError("λ must be positive")
        self.A = A
        self.wbar = wbar.reshape(-1).to(torch.float32)
        self.lam = float(lam)
        n = A.shape[0]
        self.n, self.p = n, A.shape[1]
        if isinstance(first_order, torch.Tensor):
            if first_order.numel() != n:
                raise ValueError(f"c has {first_order.numel()} entries for {n} rows of A")
            self.c = first_order.reshape(-1).to(torch.float64)
        else:
            self.c = (torch.full((n,), 1.0 / n**0.5, dtype=torch.float64) if first_order
                      else torch.zeros(n, dtype=torch.float64))
        self.c_sq = float(self.c @ self.c)

    # --- passes over A -------------------------------------------------------------------
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """A v in float64 (v dense, length p)."""
        out = torch.zeros(self.n, dtype=torch.float64)
        v = v.to(torch.float32)
        for j in range(0, self.p, BLOCK):
            out += (self.A[:, j:j + BLOCK] @ v[j:j + BLOCK]).double()
        return out

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        """Aᵀ u in float32 (length p)."""
        u32 = u.to(torch.float32)
        out = torch.empty(self.p, dtype=torch.float32)
        for j in range(0, self.p, BLOCK):
            out[j:j + BLOCK] = u32 @ self.A[:, j:j + BLOCK]
        return out

    def gram(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """K_S = A_S A_Sᵀ (float64), S = mask (all columns if None).

        K is symmetric, so only its lower block triangle is multiplied: with the rows split at
        h = n/2, rows [0, h) against themselves and rows [h, n) against all, 3/4 of a full
        product's flops; the upper right block is the lower left one transposed. Each entry is
        the same dot product as in a full product (equal to the bit on ResNet20's G,
        benchmarks/gram_gather.py)."""
        n, h = self.n, self.n // 2
        K = torch.zeros(n, n, dtype=torch.float64)
        for j in range(0, self.p, BLOCK):
            blk = self.A[:, j:j + BLOCK]
            if mask is not None:
                keep = mask[j:j + BLOCK]
                kept = int(keep.sum())
                if kept == 0:
                    continue
                if kept < blk.shape[1]:
                    # a boolean-mask gather of the kept columns: the same K as index_select, in
                    # 0.48-0.96x its time on ResNet20's masks (benchmarks/gram_gather.py)
                    blk = blk[:, keep]
            K[:h, :h] += (blk[:h] @ blk[:h].T).double()
            K[h:] += (blk[h:] @ blk.T).double()
        K[:h, h:] = K[h:, :h].T
        return K

    def columns(self, idx: torch.Tensor) -> torch.Tensor:
        """A[:, idx] as a float32 (n, len(idx)) copy."""
        return self.A.index_select(1, idx)

    # --- objective and backsolve ---------------------------------------------------------
    def objective(self, w: torch.Tensor) -> float:
        """Q(w) evaluated directly (one pass over A)."""
        d = w.reshape(-1).to(torch.float32) - self.wbar
        r = self.matvec(d)
        dd = d.double()
        return float(0.5 * (r @ r) + 0.5 * self.lam * (dd @ dd) + self.c @ r)

    def state(self, mask: torch.Tensor, K: torch.Tensor | None = None,
              e: torch.Tensor | None = None) -> SupportState:
        """Backsolve on ``mask``; K and e may be passed when known (updates)."""
        off = ~mask
        wbar_off = torch.where(off, self.wbar, torch.zeros_like(self.wbar))
        if K is None:
            K = self.gram(mask)
        if e is None:
            e = -self.matvec(wbar_off) + self.c
        u, L, lam = self._solve(K, e)
        wo = wbar_off.double()
        obj = 0.5 * lam * (float(e @ u) + float(wo @ wo)) - 0.5 * self.c_sq
        return SupportState(mask, K, e, float(wo @ wo), u, obj, L)

    def _solve(self, K: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """u = (K + λI)⁻¹e, the Cholesky factor, and the ridge actually used.

        When λ is far below the scale of a rank-deficient K_S (a support smaller than n) the
        factorisation fails in float64; the ridge then grows by a jitter relative to K's mean
        diagonal, 100× larger each try, and the objective is the one of that ridge (it differs
        from Q_λ at the same weights by (jitter/2)‖w − w̄‖², negligible at such λ)."""
        M = K.clone()
        M.diagonal().add_(self.lam)
        lam = self.lam
        L, info = torch.linalg.cholesky_ex(M)
        scale = float(M.diagonal().abs().mean())
        rel = 1e-10
        while int(info) != 0:
            if rel > 1e-2 or not math.isfinite(scale):
                raise ValueError(f"K_S + λI is not positive definite (λ = {self.lam:g}, mean "
                                 f"diagonal {scale:g}): are the gradients finite?")
            M.diagonal().add_(rel * scale)
            lam += rel * scale
            L, info = torch.linalg.cholesky_ex(M)
            rel *= 100
        z = torch.linalg.solve_triangular(L, e.unsqueeze(1), upper=False)
        return torch.linalg.solve_triangular(L.T, z, upper=True).squeeze(1), L, lam

    def leverage(self, st: SupportState, idx: torch.Tensor) -> torch.Tensor:
        """q_j = a_jᵀ(K_S + λI)⁻¹a_j for the columns ``idx`` (float64).

        Freeing a pruned j lowers Q by λv_j²/(2(1 + q_j)); removing a kept i raises it by
        λv_i²/(2(1 − q_i)) (OBS on the support). Costs n²·len(idx).
        """
        if idx.numel() == 0:
            return torch.empty(0, dtype=torch.float64)
        Z = torch.linalg.solve_triangular(st.chol, self.columns(idx).double(), upper=False)
        return (Z * Z).sum(0)

    def weights(self, st: SupportState) -> torch.Tensor:
        """w on the support's backsolve: w̄ − Aᵀu on S, 0 off S; also returns nothing else."""
        v = self.wbar - self.rmatvec(st.u)
        return torch.where(st.mask, v, torch.zeros_like(v))

    def free_values(self, st: SupportState) -> torch.Tensor:
        """v = w̄ − Aᵀu: kept weights on S, the freed value of each pruned weight off S."""
        return self.wbar - self.rmatvec(st.u)

    def swap(self, st: SupportState, add: torch.Tensor, drop: torch.Tensor) -> SupportState:
        """The backsolve on S ∪ add ∖ drop, by a rank-(|add|+|drop|) update of K_S and e."""
        mask = st.mask.clone()
        mask[add] = True
        mask[drop] = False
        A_add, A_drop = self.columns(add), self.columns(drop)
        K = st.K + (A_add @ A_add.T).double() - (A_drop @ A_drop.T).double()
        e = st.e + (A_add @ self.wbar[add]).double() - (A_drop @ self.wbar[drop]).double()
        wo_sq = st.wbar_off_sq - float((self.wbar[add].double() ** 2).sum()) \
            + float((self.wbar[drop].double() ** 2).sum())
        u, L, lam = self._solve(K, e)
        obj = 0.5 * lam * (float(e @ u) + wo_sq) - 0.5 * self.c_sq
        return SupportState(mask, K, e, wo_sq, u, obj, L)
