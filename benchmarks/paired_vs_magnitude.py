"""Does a method beat magnitude pruning on the same test images? Paired 95% intervals.

Issue 7 asks whether CHITA with BatchNorm recalibration beats magnitude with recalibration "by
more than the interval". Two accuracies on the same 846 CIFAR-10 test images are not
independent: most images are right (or wrong) under both networks, so the two Wilson intervals
side by side overstate the uncertainty of their difference. This script prints both: each
accuracy with its Wilson interval, and the difference with the matched-pairs interval of
``core.evaluate.paired_difference`` (Agresti–Min), from the images only one of the two gets right.

Every method runs with the engine's defaults (n = 1000, λ on held-out calibration loss,
BatchNorm recalibration on or off as asked, no refinement unless ``--refine STEPS``, which then
refines the baseline too); CHITA++ prunes all sparsities of a seed along one schedule
(``prune_path``), as a sweep does. The baseline is magnitude pruning with the same settings,
measured in the same run.

    python benchmarks/paired_vs_magnitude.py [--model resnet20|mlpnet]
        [--methods woodfisher,chita,chita++] [--sparsities 0.7,0.8,0.9] [--recal on|off]
        [--seeds 0] [--refine STEPS] [--stages N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, accuracy_text, load_shared, points_text, prune_at  # noqa: E402

from core.evaluate import EvalResult, evaluate, paired_difference  # noqa: E402
from core.pruning import PruneRequest, apply_result  # noqa: E402


def _evals(loaded, bundle, arch: str, method: str, sparsities: list[float], seed: int,
           recal: bool, refine: int, stages: int = 0) -> tuple[list[EvalResult], float]:
    """Test-set results per sparsity for one method, and the pruning seconds in all."""
    req = PruneRequest(method=method, sparsity=sparsities[-1], samples=1000, seed=seed,
                       recalibrate_bn=recal, refine_steps=refine, stages=stages)
    results, seconds = prune_at(loaded, bundle, arch, req, sparsities)
    return [evaluate(apply_result(loaded.model, r), bundle.evaluation) for r in results], sum(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=sorted(SETUPS))
    ap.add_argument("--methods", default="woodfisher,chita,chita++")
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--recal", default="on", choices=("on", "off"))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--refine", type=int, default=0, help="refinement steps, baseline included")
    ap.add_argument("--stages", type=int, default=0, help="CHITA++ stages (default 0: automatic)")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = sorted(float(s) for s in args.sparsities.split(","))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    recal = args.recal == "on"
    bases = {seed: _evals(loaded, bundle, args.model, "magnitude", sparsities, seed, recal, args.refine)
             for seed in seeds}  # the baseline with the same calibration sample
    n = bases[seeds[0]][0][0].n
    refined = f"{args.refine} refinement steps (baseline too)" if args.refine else "no refinement"
    if args.stages:
        refined += f", CHITA++ {args.stages} stages"
    print(f"{args.model}, n = 1000 gradient images, BatchNorm recalibration {args.recal}, "
          f"{refined}; accuracy % on {n} test images with 95% Wilson intervals; Δ = method − "
          f"magnitude on the same images, with its paired 95% interval (Agresti–Min)\n")
    print("| method | seed | sparsity | accuracy | magnitude | Δ points [paired 95%] | images "
          "only the method / only magnitude gets right | unpaired intervals disjoint | paired "
          "interval excludes 0 | pruning s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in methods:
        for seed in seeds:
            evs, secs = _evals(loaded, bundle, args.model, method, sparsities, seed, recal,
                               args.refine, args.stages)
            for s, ev, mag in zip(sparsities, evs, bases[seed][0]):
                d = paired_difference(ev, mag)
                disjoint = ev.accuracy_ci[0] > mag.accuracy_ci[1] or ev.accuracy_ci[1] < mag.accuracy_ci[0]
                print(f"| {method} | {seed} | {s} | {accuracy_text(ev)} | {accuracy_text(mag)} | "
                      f"{points_text(d)} | "
                      f"{d.a_only} / {d.b_only} | {'yes' if disjoint else 'no'} | "
                      f"{'yes' if d.excludes_zero else 'no'} | {secs / len(sparsities):.1f} |")
    base_secs = sum(secs for _, secs in bases.values()) / len(bases)
    print(f"\nmagnitude (the baseline): {base_secs / len(sparsities):.1f} s per sparsity")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
