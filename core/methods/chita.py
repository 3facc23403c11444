"""CHITA: best-subset selection on the local quadratic model (Benbaki et al., ICML 2023).

Problem (with A = G/√n, see :mod:`core.methods.quadratic`):

    min_w  Q(w) = ½‖A(w − w̄)‖² + (λ/2)‖w − w̄‖² [+ gᵀ(w − w̄)]   s.t.  ‖w‖₀ ≤ k

Algorithm, readable top to bottom in :func:`chita_solve`:

1. Start from a support S₀ (magnitude, or a warm start) and backsolve on it: the exact
   least-squares weights on S₀, computed in the n-dimensional sample space by Woodbury.
2. Iterative hard thresholding with a line search that exploits the quadratic's structure.
   At a backsolved point the gradient vanishes on S, and off S it is ∇_j = −λ v_j with
   v = w̄ − Aᵀu. The IHT step z = H_k(w − η∇) keeps w_i (i ∈ S) and offers ηλ·v_j (j ∉ S),
   so a larger η swaps more pruned weights in for kept ones. The active set is the weights
   nearest the threshold (largest |v| off S, smallest |v| on S); on it the exact change of
   the backsolved objective for every single swap is closed-form (Woodbury on a rank-2
   update of the n×n Gram), and the swaps are ordered by it. The line search runs over the
   number m of swaps taken (halving) and accepts the first support whose exact backsolved
   objective is lower. Each trial is a rank-2m update of the n×n Gram and one Cholesky.
3. Stop when no step lowers the objective (a fixed point of IHT with backsolve) or at
   ``max_iter``; report iterations and the objective trace.
4. Final least-squares backsolve on the support, from a freshly computed Gram.

Because it starts at the magnitude support's backsolve and only accepts descent, the final
objective is never above the magnitude mask's backsolve at the same A, λ, k.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

from core.methods.quadratic import LocalQuadratic, SupportState
from core.methods.selection import Budget, select, top_indices
from core.progress import CancelToken, ProgressFn, check, report
from core.sparsity_pattern import BlockBudget, block_mask


@dataclass(frozen=True)
class ChitaSolution:
    """Weights and mask (p,), objective trace and convergence facts of one solve."""

    weights: torch.Tensor
    mask: torch.Tensor
    objective: float
    start_objective: float  # backsolve on the starting support (magnitude unless warm-started)
    trace: tuple[float, ...]
    iterations: int
    swaps: int
    converged: bool
    free_values: torch.Tensor  # v = w̄ − Aᵀu at the solution: warm start for a sparser solve
    state: SupportState | None = None  # K_S and e at the solution: reused by the next solve
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Pool-space work is many small ops: one thread avoids OpenMP spin-waits (measured 50×
    slower with two threads on a busy 2-core machine); big passes over G keep all threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _ActiveSet:
    """Pool-space quantities for the candidate columns U near the threshold.

    With M = K_S + λI: P = UᵀM⁻¹U, h = Uᵀu = Uᵀ M⁻¹e. For a set W of swaps (entering D = +1,
    leaving D = −1, s = D·w̄_W) the exact change of the backsolved objective is

        ΔQ(W) = (λ/2)·(2h_Wᵀs + sᵀP_WW s − tᵀ(D + P_WW)⁻¹t − sᵀDs),   t = h_W + P_WW s

    (Woodbury on the rank-|W| change of M), and after accepting W, with B = (D + P_WW)⁻¹,

        P ← P − P_{:W} B P_{W:},      h ← h + P_{:W}(s − B t).

    So inner iterations work in the pool's dimension only; n and p are touched at refreshes.

    The pool is kept in two blocks, its ``n_off`` columns off S first and those on S after
    them. A swap exchanges one of each, so the blocks keep their sizes, and :meth:`accept`
    exchanges the two columns' places: the off × on block of P that every pricing reads is
    then a slice of P, not a gather (``benchmarks/swap_pricing.py``).
    """

    def __init__(self, quad: LocalQuadratic, st: SupportState, idx: torch.Tensor,
                 group: torch.Tensor) -> None:
        on = st.mask[idx]
        order = torch.cat([(~on).nonzero().squeeze(1), on.nonzero().squeeze(1)])
        idx, group = idx[order], group[order]
        self.lam = quad.lam
        self.idx = idx
        self.group = group
        self.n_off = int((~on).sum())
        self.on = st.mask[idx].clone()  # n_off False, then True: kept so by accept
        U = quad.columns(idx).double()
        Y = torch.linalg.solve_triangular(st.chol, U, upper=False)
        self.P = Y.T @ Y
        self.h = U.T @ st.u
        self.wb = quad.wbar[idx].double()

    def delta(self, pos: torch.Tensor, sign: torch.Tensor) -> float:
        """Exact ΔQ for swapping the pool positions ``pos`` (sign +1 enter, −1 leave)."""
        D = sign.double()
        s = D * self.wb[pos]
        Pw = self.P[pos][:, pos]
        t = self.h[pos] + Pw @ s
        inner = torch.linalg.solve(torch.diag(D) + Pw, t)
        return float(0.5 * self.lam * (2 * self.h[pos] @ s + s @ Pw @ s - t @ inner - s @ (D * s)))

    def pair_deltas(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ΔQ of every single swap (j off S enters, i on S leaves) in the pool, same group.

        The 2×2 case of :meth:`delta` written out, with a = 1 + q_j, b = 1 − q_i (> 0 on the
        support), C = P_ji, t₁ = h_j + q_j w̄_j − C w̄_i, t₂ = h_i + C w̄_j − q_i w̄_i:

            ΔQ = (λ/2)·[(q_j − 1)w̄_j² + 2h_j w̄_j + (q_i + 1)w̄_i² − 2h_i w̄_i − 2C w̄_j w̄_i
                        − (b t₁² + 2C t₁t₂ − a t₂²)/(ab + C²)]

        computed in place over the off × on block (this is the solver's hot loop).
        """
        k = self.n_off
        off, on = torch.arange(k), torch.arange(k, self.on.numel())
        q, h, wb = self.P.diagonal(), self.h, self.wb
        qj, qi, hj, hi, wj, wi = q[:k], q[k:], h[:k], h[k:], wb[:k], wb[k:]
        a, b = (1.0 + qj)[:, None], (1.0 - qi)[None, :]
        C = self.P[:k, k:]  # a view of P: read, never written
        t1 = C * (-wi)[None, :]
        t1 += (hj + qj * wj)[:, None]
        t2 = C * wj[:, None]
        t2 += (hi - qi * wi)[None, :]
        num = t1 * t1
        num *= b
        t1 *= t2
        t1 *= C
        t1 *= 2.0
        num += t1
        t2 *= t2
        t2 *= a
        num -= t2
        den = C * C
        den += a * b
        num /= den
        delta = C * (-2.0 * wj)[:, None]  # −2C w̄_j w̄_i + the separable terms − the quadratic form
        delta *= wi[None, :]
        delta += ((qj - 1.0) * wj * wj + 2.0 * hj * wj)[:, None]
        delta += ((qi + 1.0) * wi * wi - 2.0 * hi * wi)[None, :]
        delta -= num
        delta *= 0.5 * self.lam
        if int(self.group.max()) > 0:  # several budgets: only swaps within one group
            same = self.group[:k][:, None] == self.group[k:][None, :]
            delta.masked_fill_(~same, float("inf"))
        return off, on, delta

    def accept(self, pos: torch.Tensor, sign: torch.Tensor) -> None:
        """Apply the swaps: update P and h, then exchange the places of each entering column
        (now on S) and its leaving partner (now off S), which keeps the two blocks.
        ``pos`` lists the entering positions, then as many leaving ones (as _inner_steps
        builds it)."""
        D = sign.double()
        s = D * self.wb[pos]
        Pcol = self.P[:, pos]
        t = self.h[pos] + self.P[pos][:, pos] @ s
        B = torch.linalg.inv(torch.diag(D) + self.P[pos][:, pos])
        self.h = self.h + Pcol @ (s - B @ t)
        self.P.addmm_(Pcol @ B, Pcol.T, alpha=-1.0)  # in place (Pcol is a copy): half the time
        enter, leave = pos[sign > 0], pos[sign < 0]
        a, b = torch.cat([enter, leave]), torch.cat([leave, enter])
        self.P[a] = self.P[b]  # the right-hand sides are copies: a plain exchange
        self.P[:, a] = self.P[:, b]
        for name in ("h", "wb", "idx", "group"):
            v = getattr(self, name)
            v[a] = v[b]


def _disjoint_pairs(off: torch.Tensor, on: torch.Tensor, delta: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Improving swaps, best first, each pool position used at most once."""
    if delta.numel() == 0:
        e = torch.empty(0, dtype=torch.long)
        return e, e, torch.empty(0, dtype=torch.float64)
    best, partner = delta.min(1)
    order = torch.argsort(best)
    used: set[int] = set()
    ins, outs, ds = [], [], []
    for r, c, d in zip(order.tolist(), partner[order].tolist(), best[order].tolist()):
        if d >= 0:
            break
        if c in used:
            continue
        used.add(c)
        ins.append(int(off[r]))
        outs.append(int(on[c]))
        ds.append(d)
    return (torch.tensor(ins, dtype=torch.long), torch.tensor(outs, dtype=torch.long),
            torch.tensor(ds, dtype=torch.float64))


def _pool(v: torch.Tensor, mask: torch.Tensor, groups: list[slice], size: int,
          frozen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Active set per group: the ``size`` largest |v| off S and the ``size`` smallest on S
    (``frozen`` columns, which never enter, are left out)."""
    idx, grp = [], []
    for g, sl in enumerate(groups):
        vv = v[sl].abs()
        mm = mask[sl]
        start = sl.start or 0
        off = ~mm if frozen is None else ~mm & ~frozen[sl]
        for sel, largest in ((off, True), (mm, False)):
            pick = top_indices(vv, size, among=sel, largest=largest) + start
            if pick.numel():
                idx.append(pick)
                grp.append(torch.full((pick.numel(),), g, dtype=torch.long))
    if not idx:
        e = torch.empty(0, dtype=torch.long)
        return e, e
    return torch.cat(idx), torch.cat(grp)


def _pool_blocks(v: torch.Tensor, mask: torch.Tensor, budget: BlockBudget, size: int,
                 frozen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Active set for N:M budgets: whole blocks, those nearest a swap.

    A block's gap is its smallest |v| on S less its largest |v| off S (an IHT step swaps the
    two where the gap is negative); the blocks of the smallest gaps give all their columns,
    about ``size`` per side, each block its own group so that swaps stay inside blocks.
    ``frozen`` columns never enter: they are left out of the blocks' columns."""
    B = budget.blocks
    if B.shape[0] == 0:
        e = torch.empty(0, dtype=torch.long)
        return e, e
    a = v.abs()[B]
    on = mask[B]
    out = ~on if frozen is None else ~on & ~frozen[B]  # what may enter
    gap = a.masked_fill(~on, float("inf")).amin(1) - a.masked_fill(~out, float("-inf")).amax(1)
    side = min(budget.pattern.n, budget.pattern.m - budget.pattern.n)
    count = min(B.shape[0], max(1, size // side))
    pick = top_indices(gap, count, largest=False)
    m = budget.pattern.m
    idx, grp = B[pick].reshape(-1), torch.arange(pick.numel()).repeat_interleave(m)
    if frozen is not None:
        keep = ~frozen[idx]
        idx, grp = idx[keep], grp[keep]
    return idx, grp


def _inner_steps(act: _ActiveSet, objective: float, budget: int, max_inner: int, rtol: float):
    """Swap steps in pool space from ``act`` (objective ``objective``) until no improving swap
    is left (or the step budget is spent).

    Returns the active set (with its final on/off status), the first step's (add, drop) column
    indices (None if no step was taken) and the number of steps.
    """
    first_step = None
    inner = 0
    while inner < budget and inner < max_inner:
        off, on, delta = act.pair_deltas()
        ins, outs, ds = _disjoint_pairs(off, on, delta)
        if ins.numel() == 0:
            break
        # line search over the step: the best m swaps, halving m until Q falls
        m, step = ins.numel(), None
        while m >= 1:
            pos = torch.cat([ins[:m], outs[:m]])
            sign = torch.cat([torch.ones(m), -torch.ones(m)])
            d = act.delta(pos, sign) if m > 1 else float(ds[0])
            if d < -rtol * abs(objective):
                step = (pos, sign, d)
                break
            m //= 2
        if step is None:
            break
        if first_step is None:
            first_step = (act.idx[step[0][step[1] > 0]], act.idx[step[0][step[1] < 0]])
        inner += 1
        act.accept(step[0], step[1])
        objective += step[2]
    return act, first_step, inner


def chita_solve(
    A: torch.Tensor,
    wbar: torch.Tensor,
    k: Budget,
    groups: list[slice],
    lam: float,
    *,
    first_order: bool | torch.Tensor = False,
    init_mask: torch.Tensor | None = None,
    warm: SupportState | None = None,
    max_iter: int = 1000,
    max_refresh: int = 100,
    max_inner: int = 64,
    rtol: float = 1e-9,
    pool: int | None = None,
    frozen: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ChitaSolution:
    """Solve the L0-constrained ridge regression with IHT + exact line search + backsolve.

    ``A`` is G/√n (n×p), ``wbar`` the dense weights (p,), ``k`` the number of nonzeros: an int
    for a global budget, or a list (one per slice in ``groups``) for a per-layer budget.
    ``init_mask`` warm-starts (it must hold the right number of nonzeros per budget); ``warm``,
    a previous solution's state at the same A (any λ, any k), saves computing K_S afresh: the
    start is reached from it by a rank update.
    ``pool`` is the active-set size per side and group (default 256 split over the groups).
    ``max_iter`` bounds the swap steps, ``max_refresh`` the exact recomputations and
    ``max_inner`` the pool-space steps between two of them. Every refresh is verified exactly:
    the trace is the exact objective after each refresh, never rising. ``frozen`` (p,) marks
    weights that never enter the support (the model's own zeros: a zero weight stays zero).
    """
    t0 = time.perf_counter()
    wbar = wbar.reshape(-1).to(torch.float32)
    quad = LocalQuadratic(A, wbar, lam, first_order=first_order)
    blocks = k if isinstance(k, BlockBudget) else None
    per_group = isinstance(k, list)
    sel_groups = groups if per_group else [slice(0, wbar.numel())]

    mask = init_mask.clone() if init_mask is not None else select(wbar.abs(), k, groups, frozen)
    if warm is not None and int((warm.mask != mask).sum()) < int(mask.sum()):
        add = (mask & ~warm.mask).nonzero().squeeze(1)
        drop = (warm.mask & ~mask).nonzero().squeeze(1)
        st: SupportState = quad.swap(warm, add, drop)
    else:
        st = quad.state(mask)
    start_obj = st.objective
    trace = [st.objective]
    t_setup = time.perf_counter() - t0
    pool_size = pool or max(8, 256 // len(sel_groups))

    swaps_total, it, converged = 0, 0, False
    refresh = 0
    while refresh < max_refresh and it < max_iter:
        refresh += 1
        check(cancel)
        v = quad.free_values(st)  # one pass over G
        idx, grp = (_pool(v, st.mask, sel_groups, pool_size, frozen) if blocks is None
                    else _pool_blocks(v, st.mask, blocks, pool_size, frozen))
        if idx.numel() == 0:
            converged = True
            break
        # P = UᵀM⁻¹U takes products of n × pool matrices: all threads (whole solves in
        # 0.81–0.93× the seconds, benchmarks/solver_overheads.py); the swap steps after it are
        # small pool-space ops: one thread
        act = _ActiveSet(quad, st, idx, grp)
        with _one_thread():
            act, first_step, inner = _inner_steps(act, st.objective, max_iter - it, max_inner, rtol)
        if first_step is None:
            converged = True
            break
        # exact refresh: rank update of K_S by the net swaps, new Cholesky, u, objective
        new_mask = st.mask.clone()
        new_mask[act.idx] = act.on
        add = (new_mask & ~st.mask).nonzero().squeeze(1)
        drop = (st.mask & ~new_mask).nonzero().squeeze(1)
        trial = quad.swap(st, add, drop)
        if not trial.objective < st.objective - rtol * abs(st.objective):
            # the pool arithmetic drifted (near-singular updates): keep only the first step,
            # which was computed from a fresh factorisation, and verify it exactly
            inner = 1
            trial = quad.swap(st, first_step[0], first_step[1])
            if not trial.objective < st.objective - rtol * abs(st.objective):
                converged = True
                break
            add, drop = first_step
        it += inner
        swaps_total += add.numel()
        st = trial
        trace.append(st.objective)
        # how many refreshes a search needs is unknown: report activity, not a fraction
        report(progress, "mask search", it, 0, f"{it} swap steps, objective {st.objective:.6g}")

    # final least-squares backsolve on the support (K_S kept exact by float64 rank updates)
    v = quad.free_values(st)
    w = torch.where(st.mask, v, torch.zeros_like(v))
    return ChitaSolution(
        weights=w, mask=st.mask, objective=st.objective, start_objective=start_obj,
        trace=tuple(trace), iterations=it, swaps=swaps_total, converged=converged,
        free_values=v, state=st,
        timings={"setup": t_setup, "solve": time.perf_counter() - t0},
    )


def backsolve(A: torch.Tensor, wbar: torch.Tensor, mask: torch.Tensor, lam: float,
              first_order: bool | torch.Tensor = False) -> tuple[torch.Tensor, float]:
    """Least-squares weights on a fixed support, and Q at them (e.g. the magnitude mask)."""
    quad = LocalQuadratic(A, wbar, lam, first_order=first_order)
    st = quad.state(mask)
    return quad.weights(st), st.objective


def objective_lower_bound(wbar: torch.Tensor, k: Budget, groups: list[slice],
                          lam: float, *, magnitude: torch.Tensor | None = None) -> float:
    """A floor under the best-subset objective: no support of k weights has Q below it.

    Without the first-order term, Q(w) = ½‖A(w − w̄)‖² + (λ/2)‖w − w̄‖² with w_j = 0 off S is at
    least (λ/2)‖w̄_{Sᶜ}‖², the data term being ≥ 0. Over all |S| = k that is smallest when Sᶜ
    holds the p − k smallest |w̄| (per group for per-layer budgets ``k``):

        Q* ≥ L_k = (λ/2) · Σ_{the p − k smallest w̄_j²}.

    So objective − L_k bounds how far a solve is from the best subset. The bound is nearly
    tight when the kept weights can absorb the data term, A_S(w_S − w̄_S) ≈ A_{Sᶜ}w̄_{Sᶜ} at a
    small cost in ‖w_S − w̄_S‖ (many more kept weights than rows): there the best mask is close
    to the magnitude mask, which attains L_k's ridge term.

    ``magnitude``, the magnitude mask at these budgets if the caller has it, saves the topk:
    its complement holds the p − k smallest w̄² (ties do not change the sum).
    """
    w2 = wbar.reshape(-1).double() ** 2
    if magnitude is None and isinstance(k, BlockBudget):  # the M − N smallest of each block
        magnitude = block_mask(w2, k)
    if magnitude is not None:
        return 0.5 * lam * float(w2[~magnitude.reshape(-1)].sum())
    budgets = [(slice(0, w2.numel()), k)] if isinstance(k, int) else list(zip(groups, k))
    total = 0.0
    for sl, kg in budgets:
        part = w2[sl]
        kept = float(torch.topk(part, kg, sorted=False).values.sum()) if kg > 0 else 0.0
        total += float(part.sum()) - kept
    return 0.5 * lam * total


def support_state(A: torch.Tensor, wbar: torch.Tensor, mask: torch.Tensor, lam: float, *,
                  first_order: bool | torch.Tensor = False, warm: SupportState | None = None) -> SupportState:
    """The backsolve on ``mask`` (objective, K_S, e), by a rank update from ``warm`` when given."""
    quad = LocalQuadratic(A, wbar, lam, first_order=first_order)
    if warm is not None and int((warm.mask != mask).sum()) < int(mask.sum()):
        return quad.swap(warm, (mask & ~warm.mask).nonzero().squeeze(1),
                         (warm.mask & ~mask).nonzero().squeeze(1))
    return quad.state(mask)


def support_weights(A: torch.Tensor, wbar: torch.Tensor, st: SupportState, lam: float, *,
                    first_order: bool | torch.Tensor = False) -> torch.Tensor:
    """Backsolved weights on ``st``'s support at another λ (K_S and e reused: one Cholesky)."""
    quad = LocalQuadratic(A, wbar, lam, first_order=first_order)
    return quad.weights(quad.state(st.mask, K=st.K, e=st.e))
