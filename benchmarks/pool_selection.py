"""The mask search's active set on large networks: topk over the candidates against a sampled
threshold first.

Every refresh of CHITA's mask search picks its active set: the 256 largest |v| off the support
and the 256 smallest on it (``core.methods.chita._pool``). It used to gather each side's
candidates (half of p at 50% sparsity) and run topk over them; above ``SAMPLED_TOP_MIN`` entries
it now reads a threshold off a strided sample and runs topk only on the entries beyond it
(``core.methods.selection.top_indices``). A profile of a CHITA run on ConvNeXt-T (p = 27.8 M,
n = 32) put about 1.5 s in these topk calls, and 2.3 s in the objective floor's sorted topk of
p/2 entries, now unsorted.

For each size this prints, in the same run: the seconds of one active-set selection both ways
(best of 5) and whether they pick the same entries; then the seconds of a whole CHITA solve on a
random problem of that size (n = 32 rows, 50% sparsity) with the previous selection patched in
(the baseline) and with the current one, and whether both end on the same mask and objective.

    python benchmarks/pool_selection.py [--sizes 268336,4000000,16000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402

from core.methods import chita  # noqa: E402
from core.methods.selection import SAMPLED_TOP_MIN, top_indices  # noqa: E402


def _previous_top(x, c, *, among=None, largest=True):
    """The previous selection: topk over every allowed entry."""
    cand = torch.arange(x.numel()) if among is None else among.nonzero().squeeze(1)
    return cand[torch.topk(x[cand], min(c, cand.numel()), largest=largest).indices]


def _select_both(vv: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    return torch.cat([fn(vv, 256, among=~mask), fn(vv, 256, among=mask, largest=False)])


def _best(fn, repeat: int = 5) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _solve(A, wbar, k, lam, top) -> tuple[float, object]:
    chita.top_indices = top  # _pool looks the function up at call time
    try:
        t0 = time.perf_counter()
        sol = chita.chita_solve(A, wbar, k, [slice(0, wbar.numel())], lam, max_iter=200)
        return time.perf_counter() - t0, sol
    finally:
        chita.top_indices = top_indices


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="268336,4000000,16000000")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; sampled threshold from "
          f"{SAMPLED_TOP_MIN:,} entries\n")
    print("| weights p | one selection, previous ms (baseline) | sampled ms | ratio | same entries "
          "| CHITA solve, previous s (baseline) | current s | ratio | same mask and objective |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in (int(s) for s in args.sizes.split(",")):
        gen = torch.Generator().manual_seed(p)
        vv = torch.randn(p, generator=gen).abs()
        mask = torch.rand(p, generator=gen) < 0.5
        t_old, old = _best(lambda: _select_both(vv, mask, _previous_top))
        t_new, new = _best(lambda: _select_both(vv, mask, top_indices))
        same = set(old.tolist()) == set(new.tolist())
        A = torch.randn(32, p, generator=gen) / 32 ** 0.5
        wbar = torch.randn(p, generator=gen) * 0.05
        lam = 1e-3 * float(A.square().sum()) / p
        s_old, sol_old = _solve(A, wbar, p // 2, lam, _previous_top)
        s_new, sol_new = _solve(A, wbar, p // 2, lam, top_indices)
        same_sol = torch.equal(sol_old.mask, sol_new.mask) and sol_old.objective == sol_new.objective
        print(f"| {p:,} | {t_old * 1e3:.1f} | {t_new * 1e3:.1f} | {t_new / t_old:.2f}× | "
              f"{'yes' if same else 'no'} | {s_old:.2f} | {s_new:.2f} | {s_new / s_old:.2f}× | "
              f"{'yes' if same_sol else 'no'} |", flush=True)
        del A
    return 0


if __name__ == "__main__":
    sys.exit(main())
