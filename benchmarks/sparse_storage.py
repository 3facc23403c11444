"""Sparse storage in exported ONNX files: bytes, load and run time against dense storage.

``export_onnx(sparse=True)`` (the CLI's ``--sparse-storage``, the app's File ▸ Sparse storage in
ONNX files) moves every weight tensor with fewer than a third nonzeros to the graph's
``sparse_initializer`` list (values plus int64 positions). This script prunes networks with the
engine's global magnitude method at several sparsities, serialises each with the exporter the app
uses, stores it both ways and measures, in the same run:

- the file's bytes and its deflate (level 6) bytes, dense and sparse storage, and their ratio;
- onnxruntime's session creation (it turns sparse initializers back into dense tensors at load)
  and one batch's inference, median of ``--repeat``;
- the largest output difference between the two files (0 expected: the same values);
- the seconds the sparse pass and its deflate add to the size measurement every run in the app
  makes (``core.export.onnx_sizes``), beside that measurement's deflate of the dense file.

Networks: the digits_mlp demo (always), MLPNet and ResNet20 from ../shared when present, and
``--convnext`` adds torchvision's ConvNeXt-T (random weights, 10-class head) at 90%.

    python benchmarks/sparse_storage.py [--repeat 5] [--convnext]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from core.export import DEFLATE_LEVEL, _eval_copy, _export_bytes, sparse_storage  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402

SHARED = ROOT.parent / "shared"
SPARSITIES = (0.5, 0.7, 0.9, 0.95, 0.98)


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def _session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def measure(name: str, model: torch.nn.Module, shape: tuple[int, ...], sparsity: float, arch: str | None,
            repeat: int) -> dict:
    """Prune ``model`` by global magnitude at ``sparsity``; both storages' bytes and timings."""
    from core.data import ImageSet

    calib = ImageSet(torch.zeros(1, *shape), torch.zeros(1, dtype=torch.long), "none")  # magnitude needs none
    result = prune(model, calib, PruneRequest(method="magnitude", sparsity=sparsity, recalibrate_bn=False), arch=arch)
    pruned = _eval_copy(apply_result(model, result))
    sample = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    dense, _ = _export_bytes(pruned, sample, None)
    t0 = time.perf_counter()
    dense_z = len(zlib.compress(dense, DEFLATE_LEVEL))
    dense_s = time.perf_counter() - t0  # what the preview's size measurement paid before
    t0 = time.perf_counter()
    sparse, moved = sparse_storage(dense)
    sparse_z = len(zlib.compress(sparse, DEFLATE_LEVEL)) if moved else dense_z
    sparse_s = time.perf_counter() - t0  # what it adds (core.export.onnx_sizes)
    x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(1)).numpy()
    outs, load_ms, run_ms = [], [], []
    for data in (dense, sparse):
        session = _session(data)
        feed = {session.get_inputs()[0].name: x}
        outs.append(session.run(None, feed)[0])
        load_ms.append(_median_ms(lambda d=data: _session(d), repeat))
        run_ms.append(_median_ms(lambda s=session, f=feed: s.run(None, f), repeat))
    return {"network": name, "sparsity": sparsity, "moved": moved, "dense": len(dense), "sparse": len(sparse),
            "dense_z": dense_z, "sparse_z": sparse_z, "load": load_ms, "run": run_ms,
            "diff": float(np.max(np.abs(outs[0] - outs[1]))), "dense_s": dense_s, "pass_s": sparse_s}


def networks(convnext: bool) -> list[tuple[str, torch.nn.Module, tuple[int, ...], str | None, tuple[float, ...]]]:
    out = [("digits_mlp (demo)", load_model("demo:digits_mlp").model, (1, 8, 8), None, SPARSITIES)]
    if (SHARED / "models").is_dir():
        out.append(("MLPNet", load_model(SHARED / "models" / "mlpnet_mnist.pt", arch="mlpnet").model,
                    (1, 28, 28), "mlpnet", SPARSITIES))
        out.append(("ResNet20", load_model(SHARED / "models" / "resnet20_cifar10.pt", arch="resnet20").model,
                    (3, 32, 32), "resnet20", SPARSITIES))
    else:
        print(f"(no {SHARED / 'models'}: MLPNet and ResNet20 skipped)", file=sys.stderr)
    if convnext:
        from core.architectures import build_architecture

        torch.manual_seed(0)
        out.append(("ConvNeXt-T (random)", build_architecture("convnext_tiny", num_classes=10).eval(),
                    (3, 32, 32), None, (0.9,)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings: median of this many (default 5)")
    parser.add_argument("--convnext", action="store_true", help="add ConvNeXt-T at 90%% (about a minute)")
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}; global magnitude pruning; load and run: median of {args.repeat}, "
          "one batch of 32 for run\n")
    print("| network | sparsity | tensors stored sparse | .onnx KiB dense | sparse | sparse ÷ dense "
          "| deflate KiB dense | sparse | ORT load ms dense | sparse | ORT run ms dense | sparse "
          "| max output difference | size check s: deflate before | added |")
    print("| --- " * 15 + "|")
    for name, model, shape, arch, sparsities in networks(args.convnext):
        for s in sparsities:
            r = measure(name, model, shape, s, arch, args.repeat)
            print(f"| {name} | {s:g} | {r['moved']} | {r['dense'] / 1024:.1f} | {r['sparse'] / 1024:.1f} "
                  f"| {r['sparse'] / r['dense']:.3f}× | {r['dense_z'] / 1024:.1f} | {r['sparse_z'] / 1024:.1f} "
                  f"| {r['load'][0]:.1f} | {r['load'][1]:.1f} | {r['run'][0]:.2f} | {r['run'][1]:.2f} "
                  f"| {r['diff']:.1g} | {r['dense_s']:.3f} | {r['pass_s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
