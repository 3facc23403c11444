"""Does a pruned ONNX file run faster in onnxruntime on the CPU? Latency against the dense file.

For each network, the dense model and three pruned copies are exported to ONNX in memory
(``core.export.onnx_model_bytes``) and timed together in alternating rounds on the same input
(``core.latency.measure_latency``): global magnitude at 90% stored dense, the same stored as
sparse initializers (``--sparse-storage``), and magnitude under the 2:4 pattern. Magnitude is
enough here: the method changes which weights are zero, not how many, and onnxruntime's kernels
do not look at which. The ratio is each file's median time over the dense file's, measured in
the same rounds.

Networks: the shared MLPNet and ResNet20 (their own data), and torchvision's ResNet-18 with
random weights and a 10-class head on the CIFAR-10 images at 32×32 (random weights time the same
as trained ones).

    python benchmarks/onnx_latency.py [--batches 1,32] [--budget 8]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402
from shared_models import shared_or_exit  # noqa: E402

from core.architectures import build_architecture  # noqa: E402
from core.export import onnx_model_bytes, sparse_storage  # noqa: E402
from core.latency import measure_latency  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402


def _files(model, bundle, arch):
    """(label, serialised ONNX model) for the dense model and its pruned copies."""
    sample = bundle.evaluation.x[:2]
    base = PruneRequest(method="magnitude", sparsity=0.9, recalibrate_bn=False)
    unstructured = apply_result(model, prune(model, bundle.calibration, base, arch=arch))
    nm = apply_result(model, prune(model, bundle.calibration, replace(base, sparsity=0.5, pattern="2:4"), arch=arch))
    pruned = onnx_model_bytes(unstructured, sample)
    return [("dense", onnx_model_bytes(model, sample)), ("magnitude 90%", pruned),
            ("magnitude 90%, sparse storage", sparse_storage(pruned)[0]),
            ("magnitude 2:4", onnx_model_bytes(nm, sample))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timing per network and batch")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    mlp, mnist = shared_or_exit("mlpnet")
    r20, cifar = shared_or_exit("resnet20")
    torch.manual_seed(0)  # the same random ResNet-18 (and file sizes) on every run
    resnet18 = build_architecture("resnet18", num_classes=10).eval()
    nets = [("MLPNet", mlp.model, mnist, "mlpnet"), ("ResNet20", r20.model, cifar, "resnet20"),
            ("ResNet-18 (torchvision, random weights, 32×32)", resnet18, cifar, None)]
    print("onnxruntime on this CPU, default session options; each network's files timed in 5 "
          f"alternating rounds of about {args.budget:g} s in all per batch size; median ms per run "
          "with the interquartile range; ratio = the file's median ÷ the dense file's, same rounds\n")
    print("| network | file | bytes | batch | median ms | interquartile ms | ÷ dense |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, model, bundle, arch in nets:
        files = _files(model, bundle, arch)
        for b in batches:
            lats = measure_latency([data for _, data in files], bundle.evaluation.x[:b], budget_s=args.budget)
            for (label, data), lat in zip(files, lats):
                print(f"| {name} | {label} | {len(data):,} | {b} | {lat.median_ms:.3f} | "
                      f"{lat.q1_ms:.3f}–{lat.q3_ms:.3f} | {lat.median_ms / lats[0].median_ms:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
