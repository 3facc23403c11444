"""Magnitude, OBD, WoodFisher/OBS, the local quadratic and CHITA against closed forms and explicit p×p algebra."""

from __future__ import annotations

import pytest
import torch

from core.methods.chita import backsolve, chita_solve
from core.methods.magnitude import magnitude_mask, magnitude_prune
from core.methods.obd import obd_prune, obd_saliency
from core.methods.quadratic import LocalQuadratic
from core.methods.selection import (
    SAMPLED_TOP_MIN,
    global_budget,
    layer_budgets,
    select,
    top_indices,
    topk_mask,
)
from core.methods.woodfisher import (
    inverse_fisher_diagonal,
    inverse_fisher_diagonals,
    woodfisher_prune,
    woodfisher_solve,
)

P = 60
GROUPS = [slice(0, 20), slice(20, 45), slice(45, 60)]
LAM = 0.05


def _problem(seed: int, n: int = 12, p: int = P):
    """Random A = G/√n (columns of varied scale), w̄ with distinct magnitudes."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(n, p, generator=g) * (0.2 + 2 * torch.rand(p, generator=g))
    wbar = torch.randn(p, generator=g)
    return G, G / n**0.5, wbar


def _H(A: torch.Tensor, lam: float) -> torch.Tensor:
    """Explicit dampened Fisher AᵀA + λI in float64."""
    A64 = A.double()
    return A64.T @ A64 + lam * torch.eye(A.shape[1], dtype=torch.float64)


def _top(scores: torch.Tensor, k: int) -> set[int]:
    return set(torch.argsort(scores, descending=True)[:k].tolist())


def _assert_exact_k(w: torch.Tensor, mask: torch.Tensor, k) -> None:
    assert mask.dtype == torch.bool and mask.shape == (P,)
    if isinstance(k, int):
        assert int(mask.sum()) == k
        assert int((w != 0).sum()) == k
    else:
        for sl, kg in zip(GROUPS, k):
            assert int(mask[sl].sum()) == kg, (sl, kg)
            assert int((w[sl] != 0).sum()) == kg, (sl, kg)
    assert torch.all(w[~mask] == 0)


GLOBAL_KS = [0, 1, 17, 30, 59, 60]
LAYER_KS = [[0, 3, 15], [1, 1, 1], [5, 10, 7], [19, 24, 14], [20, 25, 15]]


# --------------------------------------------------------------------------- exact number of nonzeros


@pytest.mark.parametrize("k", GLOBAL_KS + LAYER_KS)
def test_every_method_keeps_exactly_k(k):
    G, A, wbar = _problem(1)
    _assert_exact_k(*magnitude_prune(wbar, k, GROUPS), k)
    _assert_exact_k(*obd_prune(G, wbar, k, GROUPS), k)
    w, mask, _ = woodfisher_prune(A, wbar, k, GROUPS, LAM)
    _assert_exact_k(w, mask, k)
    sol = chita_solve(A, wbar, k, GROUPS, LAM)
    _assert_exact_k(sol.weights, sol.mask, k)


@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("k", [[4, 9, 2], 12])
def test_chita_first_order_keeps_exactly_k(seed, k):
    _, A, wbar = _problem(seed)
    sol = chita_solve(A, wbar, k, GROUPS, LAM, first_order=True)
    _assert_exact_k(sol.weights, sol.mask, k)


def test_budgets_round_and_reject_bad_sparsity():
    assert global_budget(1000, 0.7) == 300 and global_budget(7, 0.5) == 4
    assert layer_budgets([10, 3, 1000], 0.9) == [1, 0, 100]
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            global_budget(10, bad)
        with pytest.raises(ValueError):
            layer_budgets([10], bad)


def test_topk_mask_exact_with_ties():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.5])
    for k in range(6):
        assert int(topk_mask(scores, k).sum()) == k
    assert torch.equal(topk_mask(scores, 4), torch.tensor([True, True, True, True, False]))


# --------------------------------------------------------------------------- which weights each method keeps


@pytest.mark.parametrize("size", [5000, SAMPLED_TOP_MIN + 4321])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("share", [1.0, 0.5, 3e-4])  # of the entries allowed by ``among``
def test_top_indices_are_topk_of_the_allowed_entries(size, largest, share):
    """The active set's selection: the c extreme entries among the allowed ones, in topk's
    order. Large inputs threshold on a sample first; the answer is the same set. The sampled
    entries are made extreme in half the cases, so that too few pass the sample's threshold
    and the selection falls back to all candidates."""
    gen = torch.Generator().manual_seed(size)
    x = torch.randn(size, generator=gen).abs()
    if share == 0.5:
        x[::max(1, size // 65536)] += 100.0 if largest else -100.0
    among = None if share == 1.0 else torch.rand(size, generator=gen) < share
    allowed = torch.arange(size) if among is None else among.nonzero().squeeze(1)
    for c in (1, 256, allowed.numel() + 5):
        got = top_indices(x, c, among=among, largest=largest)
        want = allowed[torch.topk(x[allowed], min(c, allowed.numel()), largest=largest).indices]
        assert got.numel() == want.numel()
        assert set(got.tolist()) == set(want.tolist())
        assert torch.equal(x[got], x[want])  # ordered by value as topk orders them


def test_magnitude_keeps_largest_absolute_values_global_and_per_layer():
    _, _, wbar = _problem(4)
    for k in (1, 13, 44):
        w, mask = magnitude_prune(wbar, k, GROUPS)
        assert set(mask.nonzero().squeeze(1).tolist()) == _top(wbar.abs(), k)
        assert torch.equal(w[mask], wbar[mask])  # no update
    k = [3, 11, 6]
    mask = magnitude_mask(wbar, k, GROUPS)
    for sl, kg in zip(GROUPS, k):
        kept = {i + sl.start for i in _top(wbar[sl].abs(), kg)}
        assert set(mask[sl].nonzero().squeeze(1).add(sl.start).tolist()) == kept


def test_obd_keeps_top_half_fisher_diag_times_w_squared():
    G, _, wbar = _problem(5)
    F_diag = (G.double() ** 2).mean(0)
    rho = 0.5 * F_diag * wbar.double() ** 2
    assert torch.allclose(obd_saliency(G, wbar).double(), rho, rtol=1e-5, atol=0)
    for k in (5, 30):
        w, mask = obd_prune(G, wbar, k, GROUPS)
        assert set(mask.nonzero().squeeze(1).tolist()) == _top(rho, k)
        assert torch.equal(w[mask], wbar[mask])
    # the ranking differs from magnitude here, so the test tells the two apart
    assert _top(rho, 30) != _top(wbar.abs().double(), 30)
    k = [2, 7, 9]
    _, mask = obd_prune(G, wbar, k, GROUPS)
    for sl, kg in zip(GROUPS, k):
        kept = {i + sl.start for i in _top(rho[sl], kg)}
        assert set(mask[sl].nonzero().squeeze(1).add(sl.start).tolist()) == kept


# --------------------------------------------------------------------------- WoodFisher / OBS


def _small_obs_problem(seed: int = 6, n: int = 10, p: int = 30, lam: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, p, generator=g) / n**0.5
    A[:, ::3] *= 3.0
    wbar = torch.randn(p, generator=g)
    return A, wbar, lam


def test_inverse_fisher_diagonal_matches_explicit_inverse():
    A, wbar, lam = _small_obs_problem()
    Finv = torch.linalg.inv(_H(A, lam))
    got = inverse_fisher_diagonal(LocalQuadratic(A, wbar, lam))
    assert got.shape == (30,)
    assert torch.allclose(got, Finv.diagonal(), rtol=1e-4, atol=0)


def test_inverse_fisher_diagonals_for_a_grid_match_explicit_inverses():
    """One pass over A gives diag(F_λ⁻¹) for every λ: each row equals the explicit inverse's."""
    A, wbar, _ = _small_obs_problem()
    lams = [10.0, 0.1, 1e-3]
    got = inverse_fisher_diagonals(A, (A @ A.T).double(), lams)
    assert got.shape == (3, 30)
    for row, lam in zip(got, lams):
        assert torch.allclose(row, torch.linalg.inv(_H(A, lam)).diagonal(), rtol=1e-4, atol=0)
    assert not torch.allclose(got[0], got[2], rtol=1e-2)  # λ matters


def test_inverse_fisher_diagonals_blockwise_report_progress_and_equal_one_block(monkeypatch):
    import core.methods.woodfisher as wf

    A, _, _ = _small_obs_problem()
    K = (A @ A.T).double()
    whole = inverse_fisher_diagonals(A, K, [0.1, 1.0])
    monkeypatch.setattr(wf, "DIAG_BLOCK", 8)
    seen = []
    blocked = inverse_fisher_diagonals(A, K, [0.1, 1.0], progress=seen.append)
    # Vᵀ·A runs in float32, and a block's width picks the matmul kernel and its summation order:
    # equal to float32 rounding (7e-7 measured with torch 2.14.1 here), not to the bit
    assert torch.allclose(blocked, whole, rtol=1e-5, atol=0)
    assert [(r.stage, r.done, r.total) for r in seen] == [("inverse Fisher", d, 30) for d in (0, 8, 16, 24)]


@pytest.mark.parametrize("k", [6, 24])  # more pruned than kept, and fewer
def test_woodfisher_warm_and_gram_shortcuts_give_the_cold_solution(k):
    """A rank update from another λ's backsolve, or K_S = K − K_{Sᶜ}, changes nothing."""
    A, wbar, lam = _small_obs_problem(seed=8)
    p = wbar.numel()
    K = (A @ A.T).double()
    cold = woodfisher_solve(A, wbar, k, [slice(0, p)], lam)
    other = woodfisher_solve(A, wbar, k + 3 if k < p // 2 else k - 3, [slice(0, p)], 10.0)
    assert int((other.mask != cold.mask).sum()) == 3  # the warm start has to move, by a rank update
    finv = inverse_fisher_diagonals(A, K, [lam])[0]
    # Q on the mask from float64 copies of A and w̄; each path works from float32 A and lands
    # within float32 rounding of it (k = 6: cold −5.5e-7, warm +5.5e-7 relative, measured on
    # one CPU; another CPU's kernels sum in another order and both passed at 1e-6 of each other)
    Ad, wd, S = A.double(), wbar.double(), cold.mask
    e = -Ad[:, ~S] @ wd[~S]
    u = torch.linalg.solve(Ad[:, S] @ Ad[:, S].T + lam * torch.eye(A.shape[0], dtype=torch.float64), e)
    exact = float(lam / 2 * (e @ u + wd[~S] @ wd[~S]))
    assert cold.objective == pytest.approx(exact, rel=2e-6)
    for kw in ({"K": K}, {"K": K, "finv": finv}, {"warm": other.state}, {"K": K, "warm": other.state}):
        sol = woodfisher_solve(A, wbar, k, [slice(0, p)], lam, **kw)
        assert torch.equal(sol.mask, cold.mask), kw
        assert torch.allclose(sol.weights, cold.weights, atol=1e-5), kw
        assert sol.objective == pytest.approx(exact, rel=2e-6), kw


def test_obs_single_weight_removal_matches_closed_form():
    """k = p − 1: remove q = argmin w_j²/(2[F⁻¹]_jj), update δw = −(w_q/[F⁻¹]_qq) F⁻¹[:, q],
    objective increase w_q²/(2[F⁻¹]_qq)."""
    A, wbar, lam = _small_obs_problem()
    p = wbar.numel()
    Finv = torch.linalg.inv(_H(A, lam))
    wb = wbar.double()
    saliency = wb ** 2 / (2 * Finv.diagonal())
    q = int(torch.argmin(saliency))
    assert float(torch.sort(saliency).values[1] - saliency[q]) > 1e-3 * float(saliency[q])  # unambiguous

    w, mask, obj = woodfisher_prune(A, wbar, p - 1, [slice(0, p)], lam)
    assert (~mask).nonzero().squeeze(1).tolist() == [q]
    expected = wb - (wb[q] / Finv[q, q]) * Finv[:, q]
    assert float(expected[q]) == pytest.approx(0.0, abs=1e-9)
    assert w[q] == 0
    assert torch.allclose(w.double(), expected, atol=1e-4 * float(wb.abs().max()))
    assert obj == pytest.approx(float(wb[q] ** 2 / (2 * Finv[q, q])), rel=1e-4)

    w0, mask0, obj0 = woodfisher_prune(A, wbar, p - 1, [slice(0, p)], lam, update=False)
    assert torch.equal(mask0, mask) and torch.equal(w0, torch.where(mask, wbar, torch.zeros_like(wbar)))
    assert obj0 == pytest.approx(obj, rel=1e-9)  # the objective reported is the updated one


def test_obs_joint_removal_matches_explicit_formula():
    """Several weights: δw = −F⁻¹_{:,P}(F⁻¹_{PP})⁻¹ w̄_P, with P the least OBS-salient set."""
    A, wbar, lam = _small_obs_problem(seed=7)
    p, k = wbar.numel(), 18
    Finv = torch.linalg.inv(_H(A, lam))
    wb = wbar.double()
    pruned = sorted(torch.argsort(wb ** 2 / (2 * Finv.diagonal()))[: p - k].tolist())
    w, mask, obj = woodfisher_prune(A, wbar, k, [slice(0, p)], lam)
    assert (~mask).nonzero().squeeze(1).tolist() == pruned
    P_ = torch.tensor(pruned)
    dw = -Finv[:, P_] @ torch.linalg.solve(Finv[P_][:, P_], wb[P_])
    expected = wb + dw
    assert torch.allclose(w.double(), expected, atol=1e-4 * float(wb.abs().max()))
    d = expected - wb
    assert obj == pytest.approx(float(0.5 * d @ _H(A, lam) @ d), rel=1e-4)


# --------------------------------------------------------------------------- the local quadratic


@pytest.mark.parametrize("first_order", [False, True])
def test_objective_equals_explicit_quadratic_form(first_order):
    G, A, wbar = _problem(8)
    n = A.shape[0]
    quad = LocalQuadratic(A, wbar, LAM, first_order=first_order)
    H = _H(A, LAM)
    g = (A.double().T @ torch.full((n,), n**-0.5, dtype=torch.float64) if first_order
         else torch.zeros(P, dtype=torch.float64))
    if first_order:  # g is the mean per-sample gradient
        assert torch.allclose(g, G.double().mean(0), rtol=1e-5, atol=1e-6)
    gen = torch.Generator().manual_seed(9)
    for _ in range(4):
        w = wbar + torch.randn(P, generator=gen) * 0.7
        d = w.double() - wbar.double()
        expected = float(0.5 * d @ H @ d + g @ d)
        assert quad.objective(w) == pytest.approx(expected, rel=1e-5)
    assert quad.objective(wbar) == 0.0


def _restricted_solve(A, wbar, lam, mask, first_order=False):
    """min Q(w) over w with w = 0 off the support, by an explicit |S|×|S| solve."""
    n = A.shape[0]
    H = _H(A, lam)
    g = (A.double().T @ torch.full((n,), n**-0.5, dtype=torch.float64) if first_order
         else torch.zeros(A.shape[1], dtype=torch.float64))
    S, O = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
    d = torch.zeros(A.shape[1], dtype=torch.float64)
    d[O] = -wbar.double()[O]
    d[S] = torch.linalg.solve(H[S][:, S], -(H[S][:, O] @ d[O]) - g[S])
    return wbar.double() + d, float(0.5 * d @ H @ d + g @ d)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("k", [5, 30, 55])
def test_backsolve_equals_explicit_restricted_solve(first_order, k):
    _, A, wbar = _problem(10)
    gen = torch.Generator().manual_seed(k)
    mask = torch.zeros(P, dtype=torch.bool)
    mask[torch.randperm(P, generator=gen)[:k]] = True
    w_ref, obj_ref = _restricted_solve(A, wbar, LAM, mask, first_order)
    w, obj = backsolve(A, wbar, mask, LAM, first_order=first_order)
    assert torch.all(w[~mask] == 0)
    assert torch.allclose(w.double(), w_ref, atol=1e-4 * float(w_ref.abs().max()))
    assert obj == pytest.approx(obj_ref, rel=1e-5, abs=1e-9)
    quad = LocalQuadratic(A, wbar, LAM, first_order=first_order)
    assert quad.objective(w) == pytest.approx(obj_ref, rel=1e-4, abs=1e-9)


def test_swap_update_equals_fresh_backsolve():
    _, A, wbar = _problem(11)
    quad = LocalQuadratic(A, wbar, LAM, first_order=True)
    mask = magnitude_mask(wbar, 25, [slice(0, P)])
    st = quad.state(mask)
    add = (~mask).nonzero().squeeze(1)[:3]
    drop = mask.nonzero().squeeze(1)[:3]
    swapped = quad.swap(st, add, drop)
    new_mask = mask.clone()
    new_mask[add], new_mask[drop] = True, False
    fresh = quad.state(new_mask)
    assert torch.equal(swapped.mask, new_mask)
    assert swapped.objective == pytest.approx(fresh.objective, rel=1e-5)  # float32 A
    assert torch.allclose(quad.weights(swapped), quad.weights(fresh), atol=1e-5)


def test_leverage_gives_exact_change_for_freeing_and_removing_one_weight():
    """Freeing pruned j lowers Q by λv_j²/(2(1+q_j)); removing kept i raises it by λv_i²/(2(1−q_i))."""
    _, A, wbar = _problem(12)
    quad = LocalQuadratic(A, wbar, LAM)
    mask = magnitude_mask(wbar, 20, [slice(0, P)])
    st = quad.state(mask)
    v = quad.free_values(st).double()
    j, i = int((~mask).nonzero()[0]), int(mask.nonzero()[0])
    q = quad.leverage(st, torch.tensor([j, i]))
    plus = mask.clone()
    plus[j] = True
    minus = mask.clone()
    minus[i] = False
    _, obj_plus = _restricted_solve(A, wbar, LAM, plus)
    _, obj_minus = _restricted_solve(A, wbar, LAM, minus)
    assert st.objective - obj_plus == pytest.approx(LAM * float(v[j]) ** 2 / (2 * (1 + float(q[0]))), rel=1e-4)
    assert obj_minus - st.objective == pytest.approx(LAM * float(v[i]) ** 2 / (2 * (1 - float(q[1]))), rel=1e-4)


# --------------------------------------------------------------------------- CHITA


@pytest.mark.parametrize("seed", [13, 14, 15])
@pytest.mark.parametrize("k", [10, 30, [3, 12, 6]])
def test_chita_first_order_never_above_magnitude_backsolve(seed, k):
    _, A, wbar = _problem(seed)
    mag = magnitude_mask(wbar, k, GROUPS)
    w_mag, obj_mag = backsolve(A, wbar, mag, LAM, first_order=True)
    sol = chita_solve(A, wbar, k, GROUPS, LAM, first_order=True)
    assert sol.start_objective == pytest.approx(obj_mag, rel=1e-9)
    assert sol.objective <= obj_mag + 1e-12 * abs(obj_mag)
    quad = LocalQuadratic(A, wbar, LAM, first_order=True)
    assert quad.objective(sol.weights) == pytest.approx(sol.objective, rel=1e-4, abs=1e-9)
    assert quad.objective(w_mag) == pytest.approx(obj_mag, rel=1e-4, abs=1e-9)
    # the reported weights are the backsolve on the reported support
    w_ref, obj_ref = _restricted_solve(A, wbar, LAM, sol.mask, first_order=True)
    assert sol.objective == pytest.approx(obj_ref, rel=1e-5, abs=1e-9)
    assert torch.allclose(sol.weights.double(), w_ref, atol=1e-4 * float(w_ref.abs().max()))


def test_chita_warm_start_keeps_support_size_and_does_not_rise():
    _, A, wbar = _problem(16)
    init = select(torch.rand(P, generator=torch.Generator().manual_seed(0)), 15, GROUPS)
    _, obj_init = backsolve(A, wbar, init, LAM)
    sol = chita_solve(A, wbar, 15, GROUPS, LAM, init_mask=init)
    assert int(sol.mask.sum()) == 15
    assert sol.start_objective == pytest.approx(obj_init, rel=1e-9)
    assert sol.objective <= obj_init
