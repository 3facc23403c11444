"""Which classes does pruning cost, and does the method change that? Per-class accuracy changes.

One accuracy over the test set can hide a class a pruned network gave up. For each method and
sparsity this prints, against the dense model on the same images (``core.class_accuracy``):
the change over all images, the class that lost most with its paired 95% interval, the spread
of the per-class changes (their standard deviation, in points), how many classes are clearly
lower (the interval excludes 0 at the Bonferroni level for all the classes), and the share of
all lost images that the two worst classes hold. Ratios are against magnitude pruning at the
same sparsity, measured in the same run; a last table compares each method with magnitude class
by class on the same images.

Every method runs with the engine's defaults (n = 1000, λ on held-out calibration loss,
BatchNorm recalibration on for ResNet20 unless ``--recal off``); CHITA++ prunes all
sparsities along one schedule (``prune_path``), as a sweep does.

    python benchmarks/class_damage.py [--model resnet20|mlpnet] [--methods chita,chita++]
        [--sparsities 0.8,0.9] [--recal on|off] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, points_text, prune_at, shared_or_exit  # noqa: E402

from core.class_accuracy import called, class_scores  # noqa: E402
from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.pruning import PruneRequest, apply_result  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=sorted(SETUPS))
    ap.add_argument("--methods", default="chita,chita++")
    ap.add_argument("--sparsities", default="0.8,0.9")
    ap.add_argument("--recal", default="on", choices=("on", "off"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    loaded, bundle = shared_or_exit(args.model)
    sparsities = sorted(float(s) for s in args.sparsities.split(","))
    methods = ["magnitude"] + [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != "magnitude"]
    ev_set = bundle.evaluation
    dense = evaluate(loaded.model, ev_set)
    recal = args.recal == "on"
    evals, seconds = {}, {}
    for method in methods:
        req = PruneRequest(method=method, sparsity=sparsities[-1], samples=1000, seed=args.seed,
                           recalibrate_bn=recal)
        results, secs = prune_at(loaded, bundle, args.model, req, sparsities)
        for s, res, sec in zip(sparsities, results, secs):
            evals[method, s] = evaluate(apply_result(loaded.model, res), ev_set)
            seconds[method, s] = sec

    classes = class_scores(dense, ev_set.y, names=ev_set.class_names)
    sizes = [c.n for c in classes]
    print(f"{args.model}, seed {args.seed}, n = 1000 gradient images, BatchNorm recalibration "
          f"{args.recal if args.model == 'resnet20' else 'none (no BatchNorm)'}; {dense.n:,} test images in "
          f"{len(classes)} classes ({min(sizes)}–{max(sizes)} each); dense {100 * dense.accuracy:.2f}%. "
          "Changes in points against dense on the same images, paired 95% intervals; clear = "
          f"excludes 0 at the Bonferroni level for {len(classes)} classes.\n")
    print("| method | sparsity | change, all images | worst class | its change | spread of class "
          "changes (sd) | classes clearly lower | lost images in the worst two | worst ÷ magnitude's "
          "worst | spread ÷ magnitude's |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for s in sparsities:
        for method in methods:
            ev = evals[method, s]
            sc = class_scores(ev, ev_set.y, reference=dense, names=ev_set.class_names)
            worst = min(sc, key=lambda c: (c.change.difference, c.label))
            spread = statistics.pstdev(100 * c.change.difference for c in sc)
            lost = sorted((c.change.b_only for c in sc), reverse=True)
            share = sum(lost[:2]) / max(1, sum(lost))
            summary[method, s] = (worst.change.difference, spread)
            mag_worst, mag_spread = summary["magnitude", s]
            print(f"| {method} | {s} | {points_text(paired_difference(ev, dense))} | {called(worst)} | "
                  f"{points_text(worst.change)} | {spread:.2f} | "
                  f"{sum(1 for c in sc if c.clear and c.change.difference < 0)} | {100 * share:.0f}% | "
                  f"{worst.change.difference / mag_worst:.2f}× | {spread / mag_spread:.2f}× |")

    for s in sparsities:
        print(f"\nAt {s}: each method against magnitude, class by class (points, paired 95% "
              "interval; * = clear for all the classes)\n")
        others = methods[1:]
        print("| class | images | magnitude − dense | " + " | ".join(f"{m} − magnitude" for m in others) + " |")
        print("| --- | --- | --- | " + " | ".join("---" for _ in others) + " |")
        mag = evals["magnitude", s]
        vs_dense = class_scores(mag, ev_set.y, reference=dense, names=ev_set.class_names)
        vs_mag = {m: class_scores(evals[m, s], ev_set.y, reference=mag, names=ev_set.class_names) for m in others}
        for i, c in enumerate(vs_dense):
            cells = [f"{points_text(vs_mag[m][i].change)}{' *' if vs_mag[m][i].clear else ''}" for m in others]
            print(f"| {called(c)} | {c.n} | {points_text(c.change)}{' *' if c.clear else ''} | " + " | ".join(cells) + " |")
        for m in others:
            best = max(vs_mag[m], key=lambda c: (c.change.difference, -c.label))
            worst = min(vs_mag[m], key=lambda c: (c.change.difference, c.label))
            print(f"\n{m} against magnitude at {s}: highest on {called(best)} "
                  f"({points_text(best.change)}), lowest on {called(worst)} ({points_text(worst.change)}); "
                  f"{sum(1 for c in vs_mag[m] if c.clear)} of {len(vs_mag[m])} classes clear.")
    print("\nPruning seconds: " + ", ".join(f"{m} at {s} {seconds[m, s]:.1f}" for m in methods for s in sparsities))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
