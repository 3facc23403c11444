"""What keeping the first and/or last layer dense does to one-shot accuracy, ResNet20 on CIFAR-10.

Deployments often leave the input layer and the classifier whole (``PruneRequest.keep_first`` /
``keep_last``; CLI ``--keep-first`` / ``--keep-last``; the app's *Keep dense* boxes). For each
method and sparsity this prunes the shared ResNet20 with every layer of the literature preset
(the baseline, measured in the same run), with the first layer (``conv1``) kept dense, with the
last (``fc``) kept dense, and with both, the app's defaults otherwise (BatchNorm recalibration
on), and prints the accuracy on the shared test images with its 95% interval, the change against
the baseline row paired on the same images, and the sparsity over all of the preset's weights
(the kept layers count as dense). The sparsity asked applies to the layers that are pruned.

    python benchmarks/keep_dense.py [--methods magnitude,chita] [--sparsities 0.7,0.8,0.9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import accuracy_text, points_text, shared_or_exit  # noqa: E402  (imports core first)

from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.pruning import PruneRequest, apply_result, default_layers, prune  # noqa: E402

CHOICES = (("every layer", False, False), ("first kept dense", True, False),
           ("last kept dense", False, True), ("first and last kept dense", True, True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="magnitude,chita")
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    args = ap.parse_args()
    loaded, bundle = shared_or_exit("resnet20")
    model = loaded.model
    every = default_layers(model, "resnet20")
    total = sum(model.get_parameter(n).numel() for n in every)
    print(f"ResNet20 (../shared), n = 1000, BatchNorm recalibration on; accuracy % on the "
          f"{int(bundle.evaluation.y.shape[0])} test images [95% CI]; the preset prunes {len(every)} "
          f"tensors, {total:,} weights ({every[0]} {model.get_parameter(every[0]).numel()}, "
          f"{every[-1]} {model.get_parameter(every[-1]).numel()})\n")
    print("| method | sparsity asked | layers | accuracy | vs every layer, points [paired 95%] | "
          "sparsity over the preset's weights | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        for s in (float(v) for v in args.sparsities.split(",")):
            base = None
            for label, first, last in CHOICES:
                t0 = time.perf_counter()
                res = prune(model, bundle.calibration, PruneRequest(method=method, sparsity=s, keep_first=first,
                                                                    keep_last=last), arch="resnet20")
                seconds = time.perf_counter() - t0
                ev = evaluate(apply_result(model, res), bundle.evaluation)
                dense = total - res.total  # weights of the layers kept dense
                overall = 1 - (res.nonzeros + dense) / total
                if base is None:
                    base, versus = ev, "–"
                else:
                    versus = points_text(paired_difference(ev, base))
                print(f"| {method} | {s} | {label} | {accuracy_text(ev)} | {versus} | {100 * overall:.2f}% | "
                      f"{seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
