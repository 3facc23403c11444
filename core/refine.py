"""Refining the kept weights after pruning: damped Gauss–Newton steps on the calibration loss.

Pruning leaves the network at w with support S (the mask) far from a minimum of the loss at high
sparsity. With the mask fixed, the local model of the loss at w (notation of
:mod:`core.methods.quadratic`: A = G/√n from per-sample gradients *at w*, c = 𝟙/√n so that
g = Aᵀc is the mean gradient) is

    Q(d) = ½‖A_S d‖² + (λ/2)‖d‖² + g_Sᵀd,        d = w'_S − w_S,

the same quadratic CHITA solves, with its first-order term and w̄ = w. Its minimiser is a
Levenberg–Marquardt step on the empirical Fisher, worked in the n-dimensional sample space by
the push-through identity (never a |S|×|S| matrix):

    d = −(A_SᵀA_S + λI)⁻¹A_Sᵀc = −A_Sᵀ(K_S + λI)⁻¹c,        K_S = A_S A_Sᵀ (n×n).

K_S is computed once per step; every λ then costs one Cholesky. λ is chosen on held-out
calibration loss and a step is taken only if it lowers that loss (the caller's loop in
:mod:`core.pruning`), so refinement never makes the held-out loss worse.
"""

from __future__ import annotations

import torch

from core.methods.quadratic import LocalQuadratic, fisher_scale


class GaussNewtonStep:
    """The damped step on the kept weights for any λ, from A_S (n×|S|) and w_S at one point."""

    def __init__(self, A_S: torch.Tensor, w_S: torch.Tensor, c: torch.Tensor | None = None) -> None:
        """``c``: the vector with A_Sᵀc = mean gradient (default 𝟙/√n, for A = G/√n);
        :func:`core.fisher.fisher_factor` gives it for mini-batch-averaged rows."""
        self.A, self.w = A_S, w_S.reshape(-1).to(torch.float32)
        self.first_order: bool | torch.Tensor = True if c is None else c
        self.all = torch.ones(self.w.numel(), dtype=torch.bool)
        self.K = LocalQuadratic(self.A, self.w, 1.0).gram()
        # mean diagonal of the Fisher on S: the scale of the λ grid
        self.scale = fisher_scale(self.A)

    def weights(self, lam: float) -> tuple[torch.Tensor, float]:
        """w_S + d at ridge ``lam``, and the model's predicted change of the loss, Q(d) < 0."""
        quad = LocalQuadratic(self.A, self.w, lam, first_order=self.first_order)
        st = quad.state(self.all, K=self.K, e=quad.c.clone())
        return quad.weights(st), st.objective
