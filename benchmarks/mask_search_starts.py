"""Does CHITA's mask search depend on where it starts? Four starts, the same G, λ and k.

The engine starts the search on the magnitude mask's backsolve. Where single-stage CHITA keeps
97-99% of that mask (ResNet20), is that the quadratic's answer or a search stuck near its start?
For each model, sparsity and calibration seed the engine runs as usual (its λ walk, its G, its
BatchNorm work); then the same run is repeated with the search started elsewhere, at the λ the
engine chose:

- **magnitude**: the engine as it is (the row every other is compared with);
- **OBS**: the WoodFisher saliency w̄_j² / [F_λ⁻¹]_jj at that λ (the quadratic's own one-weight
  criterion, diag(F_λ⁻¹) by Woodbury from the same A);
- **LAMP**: layer-adaptive magnitude (w² over the sum of the layer's weights at least as large;
  Lee et al., ICLR 2021), a different per-layer allocation;
- **gradual**: prune on the same G in 8 steps of a log schedule, each a top-k of the previous
  step's backsolved |w| and a backsolve (one G, no new gradients: not CHITA++).

The alternative searches may take up to 5000 swap steps (the engine's cap is 1000), so that a
start far from the answer is not cut short. Each row gives the start's share of the magnitude
mask, the backsolve objective at the start, the objective the search ends at, its swap steps and
seconds, the final share of the magnitude mask and of the mask the engine ends at, and the accuracy on the run's *validation*
images (calibration images the run used for nothing; never the test images).

    python benchmarks/mask_search_starts.py [--model resnet20|mlpnet] [--sparsities ...]
                                            [--seeds 0,1] [--recalibrate-bn on|off]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import shared_or_exit, validation_images  # noqa: E402

from core import pruning  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.methods.chita import chita_solve, support_state, support_weights  # noqa: E402
from core.methods.quadratic import LocalQuadratic  # noqa: E402
from core.methods.selection import select  # noqa: E402
from core.methods.woodfisher import inverse_fisher_diagonals  # noqa: E402

STARTS = ("magnitude", "OBS", "LAMP", "gradual")
GRADUAL_STEPS = 8


def lamp_scores(wbar: torch.Tensor, groups: list[slice]) -> torch.Tensor:
    """LAMP score per weight: w_u² / Σ_{v in u's layer, |w_v| ≥ |w_u|} w_v² (comparable across layers)."""
    scores = torch.empty(wbar.numel(), dtype=torch.float64)
    for sl in groups:
        w2 = wbar[sl].double() ** 2
        srt, order = torch.sort(w2)
        tail = torch.flip(torch.cumsum(torch.flip(srt, [0]), 0), [0])
        layer = torch.empty_like(w2)
        layer[order] = srt / tail
        scores[sl] = layer
    return scores


def start_mask(name: str, A: torch.Tensor, wbar: torch.Tensor, k: int, groups: list[slice],
               lam: float) -> tuple[torch.Tensor, object]:
    """The starting support for ``name`` (and a backsolve state on it when one was built)."""
    whole = [slice(0, wbar.numel())]
    if name == "OBS":
        K = LocalQuadratic(A, wbar, lam).gram()
        finv = inverse_fisher_diagonals(A, K, [lam])[0]
        return select(wbar.double() ** 2 / finv, k, whole), None
    if name == "LAMP":
        return select(lamp_scores(wbar, groups), k, whole), None
    # gradual: densities d_i = d^(i/steps) on the same A, each a top-k of the backsolved |w|
    p, density = wbar.numel(), k / wbar.numel()
    w, st = wbar, None
    for i in range(1, GRADUAL_STEPS + 1):
        ki = k if i == GRADUAL_STEPS else int(round(p * density ** (i / GRADUAL_STEPS)))
        mask = select(w.abs(), ki, whole)
        st = support_state(A, wbar, mask, lam, warm=st)
        w = support_weights(A, wbar, st, lam)
    return mask, st


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=["resnet20", "mlpnet"])
    ap.add_argument("--sparsities", default=None, help="default: 0.7,0.8,0.9 (ResNet20), 0.9,0.95,0.98 (MLPNet)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--recalibrate-bn", default="on", choices=["on", "off"],
                    help="ResNet20 only (default on, the engine's default)")
    args = ap.parse_args()
    sparsities = [float(v) for v in (args.sparsities or
                                     ("0.7,0.8,0.9" if args.model == "resnet20" else "0.9,0.95,0.98")).split(",")]
    recal = args.model == "resnet20" and args.recalibrate_bn == "on"
    loaded, bundle = shared_or_exit(args.model)

    engine = pruning._Context._chita
    seen: dict = {}
    current = {"start": "magnitude"}

    def started_elsewhere(self, work, A, wbar, k, grid, info, sparsity, label):
        """The engine's step, or (for another start) the mask search at the engine's λ."""
        if current["start"] == "magnitude":
            w, mask, trace, lam = engine(self, work, A, wbar, k, grid, info, sparsity, label)
            final = info["final"][-1]
            solver = info["solver"][-1]
            seen.update(lam=lam, start_share=1.0, start_obj=final["magnitude_objective"],
                        objective=final["objective"], steps=solver["iterations"],
                        seconds=solver["seconds"], mask=mask,
                        final_share=final["magnitude_mask_kept"])
            return w, mask, trace, lam
        lam = seen["lam"]
        t0 = time.perf_counter()
        init, st = start_mask(current["start"], A, wbar, k, self.groups, lam)
        sol = chita_solve(A, wbar, k, self.groups, lam, init_mask=init, warm=st,
                          max_iter=5000, max_refresh=400, cancel=self.cancel)
        mag = select(wbar.abs(), k, self.groups)
        seen.update(start_share=float((init & mag).sum()) / k, start_obj=sol.start_objective,
                    objective=sol.objective, steps=sol.iterations,
                    seconds=time.perf_counter() - t0, mask=sol.mask,
                    final_share=float((sol.mask & mag).sum()) / k)
        return sol.weights, sol.mask, list(sol.trace), lam

    what = "BatchNorm recalibrated after pruning" if recal else "no recalibration after pruning"
    print(f"{args.model}, single-stage CHITA, n = 1000, {what}; every start at the λ the engine chose; "
          "accuracy on the run's validation images (calibration images it used for nothing)\n")
    print("| sparsity | seed | λ | start | start's share of the magnitude mask | start objective | "
          "final objective | final ÷ magnitude start's final | swap steps | search s | "
          "final share of the magnitude mask | final share of the magnitude start's final mask | validation % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    pruning._Context._chita = started_elsewhere
    try:
        for s in sparsities:
            for seed in (int(v) for v in args.seeds.split(",")):
                reference = None
                for start in STARTS:
                    current["start"] = start
                    req = pruning.PruneRequest(method="chita", sparsity=s, seed=seed, recalibrate_bn=recal)
                    res = pruning.prune(loaded.model, bundle.calibration, req, arch=args.model)
                    model = pruning.apply_result(loaded.model, res)
                    val = 100 * evaluate(model, validation_images(bundle.calibration, seed, res)).accuracy
                    if start == "magnitude":
                        reference = (seen["objective"], seen["mask"])
                    overlap = float((seen["mask"] & reference[1]).sum()) / max(1, int(reference[1].sum()))
                    print(f"| {s} | {seed} | {seen['lam']:.3g} | {start} | {seen['start_share']:.3f} | "
                          f"{seen['start_obj']:.6g} | {seen['objective']:.6g} | "
                          f"{seen['objective'] / reference[0]:.5f} | {seen['steps']} | {seen['seconds']:.1f} | "
                          f"{seen['final_share']:.3f} | {overlap:.3f} | "
                          f"{val:.2f} |", flush=True)
    finally:
        pruning._Context._chita = engine
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
