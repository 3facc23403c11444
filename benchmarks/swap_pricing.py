"""CHITA's swap pricing: three ways to price every single swap of the active set.

Pricing every single swap of the 256 × 256 active set is the mask search's hot loop. Three
implementations, measured in the same process:

- "plain": the 2×2 Woodbury change of Q as one broadcast expression (the first code);
- "gather": the in-place arithmetic on the off × on block gathered from P at every pricing
  (``P[off][:, on]``), the pool in the order the active set was built (the previous code);
- "blocks" (current, :class:`core.methods.chita._ActiveSet`): the pool kept as an off block then
  an on block, an accepted swap exchanging its two columns' places, so the block is a slice;
  and the accepted swaps' rank update of P made in place (``addmm_``, no new pool × pool array).

It prints the milliseconds of one pricing, then, when ../shared is present, whole CHITA solves on
MLPNet's gradients (n = 1000) with "gather" and "blocks", then whole runs (a CHITA sweep and
CHITA++ at 0.98, ``prune``/``prune_path`` as the CLI runs them), configurations alternating; the
last columns say whether masks and weights are equal to the bit.

    python benchmarks/swap_pricing.py [--repeat 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import mean_ms  # noqa: E402

from core.methods import chita  # noqa: E402

SHARED = ROOT.parent / "shared"


def plain_pair_deltas(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first code: the 2×2 Woodbury change of Q written as one broadcast expression."""
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


def gather_init(self, quad, st, idx, group) -> None:
    """The previous code's active set: the pool in the order it was built."""
    self.lam = quad.lam
    self.idx = idx
    self.group = group
    self.on = st.mask[idx].clone()
    U = quad.columns(idx).double()
    Y = torch.linalg.solve_triangular(st.chol, U, upper=False)
    self.P = Y.T @ Y
    self.h = U.T @ st.u
    self.wb = quad.wbar[idx].double()


def gather_pair_deltas(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The previous code's pricing: the same in-place arithmetic on a gathered block."""
    off = (~self.on).nonzero().squeeze(1)
    on = self.on.nonzero().squeeze(1)
    q, h, wb = self.P.diagonal(), self.h, self.wb
    qj, qi, hj, hi, wj, wi = q[off], q[on], h[off], h[on], wb[off], wb[on]
    a, b = (1.0 + qj)[:, None], (1.0 - qi)[None, :]
    C = self.P[off][:, on]
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
    delta = C
    delta *= (-2.0 * wj)[:, None]
    delta *= wi[None, :]
    delta += ((qj - 1.0) * wj * wj + 2.0 * hj * wj)[:, None]
    delta += ((qi + 1.0) * wi * wi - 2.0 * hi * wi)[None, :]
    delta -= num
    delta *= 0.5 * self.lam
    if int(self.group.max()) > 0:
        same = self.group[off][:, None] == self.group[on][None, :]
        delta.masked_fill_(~same, float("inf"))
    return off, on, delta


def gather_accept(self, pos: torch.Tensor, sign: torch.Tensor) -> None:
    """The previous code's accept: columns stay where they are, their on/off status flips."""
    D = sign.double()
    s = D * self.wb[pos]
    Pcol = self.P[:, pos]
    t = self.h[pos] + self.P[pos][:, pos] @ s
    B = torch.linalg.inv(torch.diag(D) + self.P[pos][:, pos])
    self.h = self.h + Pcol @ (s - B @ t)
    self.P = torch.addmm(self.P, Pcol @ B, Pcol.T, alpha=-1.0)
    self.on[pos] = sign > 0


CURRENT = (chita._ActiveSet.__init__, chita._ActiveSet.pair_deltas, chita._ActiveSet.accept)
GATHER = (gather_init, gather_pair_deltas, gather_accept)


@contextmanager
def layout(which: str) -> Iterator[None]:
    """Run the mask search with the "gather" (previous) or "blocks" (current) active set."""
    cls = chita._ActiveSet
    cls.__init__, cls.pair_deltas, cls.accept = GATHER if which == "gather" else CURRENT
    try:
        yield
    finally:
        cls.__init__, cls.pair_deltas, cls.accept = CURRENT


def _random_pool(size: int, blocks: bool) -> "chita._ActiveSet":
    """An active set with a valid pool Gram (P = UᵀM⁻¹U has eigenvalues in [0, 1)), its on
    and off columns interleaved ("gather") or in two blocks ("blocks")."""
    g = torch.Generator().manual_seed(0)
    act = object.__new__(chita._ActiveSet)
    U = torch.randn(400, 2 * size, generator=g, dtype=torch.float64)
    M = U @ U.T + 50.0 * torch.eye(400, dtype=torch.float64)
    act.P = U.T @ torch.linalg.solve(M, U)
    act.h = torch.randn(2 * size, generator=g, dtype=torch.float64)
    act.wb = torch.randn(2 * size, generator=g, dtype=torch.float64)
    on = torch.randperm(2 * size, generator=g) >= size
    if blocks:  # the same pool reordered: off columns first
        order = torch.cat([(~on).nonzero().squeeze(1), on.nonzero().squeeze(1)])
        act.P, act.h, act.wb, on = act.P[order][:, order], act.h[order], act.wb[order], on[order]
    act.on = on
    act.n_off = int((~on).sum())
    act.group = torch.zeros(2 * size, dtype=torch.long)
    act.lam = 0.3
    return act


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the whole-run comparison")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the mask search prices in one thread (chita._one_thread)
    mixed, blocks = _random_pool(256, False), _random_pool(256, True)
    ref = plain_pair_deltas(mixed)[2]
    diffs = (float((gather_pair_deltas(mixed)[2] - ref).abs().max()),
             float((chita._ActiveSet.pair_deltas(blocks)[2] - ref).abs().max()))
    plain = mean_ms(lambda: plain_pair_deltas(mixed), args.repeat)
    gather = mean_ms(lambda: gather_pair_deltas(mixed), args.repeat)
    block = mean_ms(lambda: chita._ActiveSet.pair_deltas(blocks), args.repeat)
    print(f"torch {torch.__version__}, one thread, pool 256 × 256, {args.repeat} repeats\n")
    print("| pricing | plain ms | gather (previous) ms | blocks (current) ms | blocks ÷ gather | "
          "blocks ÷ plain | max |Δ| against plain (gather / blocks) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| one pricing | {plain:.2f} | {gather:.2f} | {block:.2f} | {block / gather:.2f}× | "
          f"{block / plain:.2f}× | {diffs[0]:.1e} / {diffs[1]:.1e} |")
    if not SHARED.is_dir():
        print(f"\n{SHARED} is missing: whole-solve timings skipped.")
        return 0

    from core.data import load_bundle
    from core.methods.selection import global_budget
    from core.model_io import load_model
    from core.pruning import PruneRequest, _Context, _flat, prune, prune_path

    torch.set_num_threads(threads)  # whole solves: passes over G use every thread
    loaded = load_model(SHARED / "models/mlpnet_mnist.pt", arch="mlpnet")
    bundle = load_bundle(str(SHARED / "data/mnist"), preset="mlpnet")
    ctx = _Context.build(loaded.model, bundle.calibration, PruneRequest(), "mlpnet", None, None)
    A = ctx.gradients(copy.deepcopy(ctx.base), {})
    wbar = _flat(ctx.base, ctx.names)
    lam = 1e-2 * ctx.fbar
    print("\nMLPNet, n = 1000, λ = 10⁻² × mean Fisher diagonal, one CHITA solve from magnitude "
          f"(best of {args.rounds}):\n")
    print("| sparsity | gather s | blocks s | ratio | swap steps (gather / blocks) | same mask | "
          "same weights |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in (0.5, 0.7, 0.9, 0.95, 0.98):
        k = global_budget(ctx.p, s)
        best: dict[str, float] = {}
        sols = {}
        for _ in range(args.rounds):
            for which in ("gather", "blocks"):
                with layout(which):
                    t0 = time.perf_counter()
                    sols[which] = chita.chita_solve(A, wbar, k, ctx.groups, lam)
                    best[which] = min(best.get(which, 1e9), time.perf_counter() - t0)
        g, b = sols["gather"], sols["blocks"]
        print(f"| {s} | {best['gather']:.2f} | {best['blocks']:.2f} | "
              f"{best['blocks'] / best['gather']:.2f}× | {g.iterations} / {b.iterations} | "
              f"{'yes' if torch.equal(g.mask, b.mask) else 'NO'} | "
              f"{'yes' if torch.equal(g.weights, b.weights) else 'NO'} |", flush=True)

    runs = {
        "CHITA sweep 0.5–0.98": lambda: prune_path(
            loaded.model, bundle.calibration, PruneRequest(method="chita", sparsity=0.98, samples=1000),
            [0.5, 0.7, 0.9, 0.95, 0.98], arch="mlpnet"),
        "CHITA++ 0.98": lambda: [prune(
            loaded.model, bundle.calibration, PruneRequest(method="chita++", sparsity=0.98, samples=1000),
            arch="mlpnet")],
    }
    print(f"\nMLPNet whole runs (λ walk included), median of {args.rounds} rounds, alternating:\n")
    print("| run | gather s | blocks s | ratio | same masks and weights |")
    print("| --- | --- | --- | --- | --- |")
    for name, fn in runs.items():
        secs: dict[str, list[float]] = {"gather": [], "blocks": []}
        out = {}
        for _ in range(args.rounds):
            for which in ("gather", "blocks"):
                with layout(which):
                    t0 = time.perf_counter()
                    out[which] = fn()
                    secs[which].append(time.perf_counter() - t0)
        same = all(torch.equal(x.masks[n], y.masks[n]) and torch.equal(x.weights[n], y.weights[n])
                   for x, y in zip(out["gather"], out["blocks"]) for n in x.masks)
        mg, mb = statistics.median(secs["gather"]), statistics.median(secs["blocks"])
        print(f"| {name} | {mg:.2f} | {mb:.2f} | {mb / mg:.2f}× | {'yes' if same else 'NO'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
