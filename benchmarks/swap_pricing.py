"""CHITA's swap pricing: the in-place `_ActiveSet.pair_deltas` against the plain expression.

Pricing every single swap of the active set is the mask search's hot loop (about a quarter of
MLPNet's CHITA++ time in a profile). This prints the milliseconds of one pricing of a 256 × 256
pool for the plain broadcast expression (the baseline, as the code had it) and for the in-place
form, and their largest difference; then, when ../shared is present, whole CHITA solves on
MLPNet's gradients (n = 1000) with each, which must take the same steps to the same objective.

    python benchmarks/swap_pricing.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import mean_ms  # noqa: E402

from core.methods import chita  # noqa: E402

SHARED = ROOT.parent / "shared"


def plain_pair_deltas(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The baseline: the 2×2 Woodbury change of Q written as one broadcast expression."""
    off = (~self.on).nonzero().squeeze(1)
    on = self.on.nonzero().squeeze(1)
    q = self.P.diagonal()
    qj, qi = q[off][:, None], q[on][None, :]
    C = self.P[off][:, on]
    wj, wi = self.wb[off][:, None], self.wb[on][None, :]
    hj, hi = self.h[off][:, None], self.h[on][None, :]
    s1, s2 = wj, -wi
    t1 = hj + qj * s1 + C * s2
    t2 = hi + C * s1 + qi * s2
    det = (1.0 + qj) * (qi - 1.0) - C * C
    quad_form = (t1 * t1 * (qi - 1.0) - 2.0 * C * t1 * t2 + t2 * t2 * (1.0 + qj)) / det
    sPs = qj * s1 * s1 + 2.0 * C * s1 * s2 + qi * s2 * s2
    delta = 0.5 * self.lam * (2.0 * (hj * s1 + hi * s2) + sPs - quad_form - (wj * wj - wi * wi))
    same = self.group[off][:, None] == self.group[on][None, :]
    return off, on, torch.where(same, delta, torch.full_like(delta, float("inf")))


def _random_pool(size: int) -> "chita._ActiveSet":
    """An active set with a valid pool Gram (P = UᵀM⁻¹U has eigenvalues in [0, 1))."""
    g = torch.Generator().manual_seed(0)
    act = object.__new__(chita._ActiveSet)
    U = torch.randn(400, 2 * size, generator=g, dtype=torch.float64)
    M = U @ U.T + 50.0 * torch.eye(400, dtype=torch.float64)
    act.P = U.T @ torch.linalg.solve(M, U)
    act.h = torch.randn(2 * size, generator=g, dtype=torch.float64)
    act.wb = torch.randn(2 * size, generator=g, dtype=torch.float64)
    act.on = torch.arange(2 * size) >= size
    act.group = torch.zeros(2 * size, dtype=torch.long)
    act.lam = 0.3
    return act


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the mask search prices in one thread (chita._one_thread)
    act = _random_pool(256)
    fast = chita._ActiveSet.pair_deltas
    diff = float((fast(act)[2] - plain_pair_deltas(act)[2]).abs().max())
    base, new = mean_ms(lambda: plain_pair_deltas(act), args.repeat), mean_ms(lambda: fast(act), args.repeat)
    print(f"torch {torch.__version__}, one thread, pool 256 × 256, {args.repeat} repeats\n")
    print("| pricing | plain expression (baseline) ms | in-place ms | ratio | max |Δ| |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| one pricing | {base:.2f} | {new:.2f} | {new / base:.2f}× | {diff:.1e} |")
    if not SHARED.is_dir():
        print(f"\n{SHARED} is missing: whole-solve timings skipped.")
        return 0

    from core.data import load_bundle
    from core.methods.selection import global_budget
    from core.model_io import load_model
    from core.pruning import PruneRequest, _Context, _flat

    torch.set_num_threads(threads)  # whole solves: passes over G use every thread
    loaded = load_model(SHARED / "models/mlpnet_mnist.pt", arch="mlpnet")
    bundle = load_bundle(str(SHARED / "data/mnist"), preset="mlpnet")
    ctx = _Context.build(loaded.model, bundle.calibration, PruneRequest(), "mlpnet", None, None)
    A = ctx.gradients(copy.deepcopy(ctx.base), {})
    wbar = _flat(ctx.base, ctx.names)
    lam = 1e-2 * ctx.fbar
    print("\nMLPNet, n = 1000, λ = 10⁻² × mean Fisher diagonal, one CHITA solve from magnitude:\n")
    print("| sparsity | baseline s | in-place s | ratio | swap steps (baseline / in-place) | "
          "same objective |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in (0.5, 0.7, 0.9, 0.95, 0.98):
        k = global_budget(ctx.p, s)
        runs = {}
        for label, impl in (("base", plain_pair_deltas), ("new", fast)):
            chita._ActiveSet.pair_deltas = impl
            try:
                t0 = time.perf_counter()
                sol = chita.chita_solve(A, wbar, k, ctx.groups, lam)
                runs[label] = (time.perf_counter() - t0, sol)
            finally:
                chita._ActiveSet.pair_deltas = fast
        (tb, sb), (tn, sn) = runs["base"], runs["new"]
        same = abs(sb.objective - sn.objective) <= 1e-9 * abs(sb.objective)
        print(f"| {s} | {tb:.2f} | {tn:.2f} | {tn / tb:.2f}× | {sb.iterations} / {sn.iterations} | "
              f"{'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
