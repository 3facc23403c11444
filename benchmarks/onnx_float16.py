"""Float16 ONNX files pruned and exported as the same kind of file, beside the float32 file.

Deployments shrink ONNX files with onnxconverter-common's float16 converter (onnxruntime ships
the same one, ``onnxruntime.transformers.float16``): float16 throughout, or with
``keep_io_types`` float32 inputs and outputs and float16 weights and arithmetic inside (a
mixed-precision file). This exports the shared ResNet20 checkpoint to ONNX (float32, the
baseline), converts that file both ways, and for each of the three files: opens it as a user
would (``core.model_io.load_model``), prunes it with CHITA at ``--sparsity`` (the app's defaults,
BatchNorm recalibration on), exports it (``core.export.export_onnx``, verified and scored in
onnxruntime), and prints the source's and the pruned file's bytes (and deflated), their ratio to
the float32 row's, the accuracy in onnxruntime on the shared test images with its 95% Wilson
interval beside PyTorch's, and the images they score differently.

    python benchmarks/onnx_float16.py [--sparsity 0.7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402  (imports core first)

from core.export import evaluate_onnx, export_onnx  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402
from tests.onnx_files import converted_float16  # noqa: E402  (the tests' float16 conversion, onnxruntime's)


def _pct(e) -> str:
    lo, hi = e.accuracy_ci
    return f"{100 * e.accuracy:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsity", type=float, default=0.7)
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    images = bundle.evaluation
    folder = Path(tempfile.mkdtemp(prefix="onnx_float16_"))
    fp32 = folder / "resnet20.onnx"
    export_onnx(loaded.model, images.x[:2], fp32)
    files = {"float32": fp32,
             "float16 weights, float32 in and out (keep_io_types)": converted_float16(fp32, folder / "mixed.onnx",
                                                                                      keep_io_types=True),
             "float16 throughout": converted_float16(fp32, folder / "half.onnx", keep_io_types=False)}
    print(f"ResNet20 (../shared checkpoint) as ONNX, pruned with CHITA at {args.sparsity} "
          f"(n = 1000, BatchNorm recalibration on) and exported; accuracy % on the {int(images.y.shape[0])} test images "
          "in onnxruntime [95% CI]\n")
    print("| file | source bytes | source accuracy | pruned file bytes (deflated) | × float32's | "
          "pruned accuracy in onnxruntime | in PyTorch | images scored differently | graph written | "
          "prune + export s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = None
    for label, path in files.items():
        source = evaluate_onnx(path, images)
        graph = load_model(path).model
        t0 = time.perf_counter()
        pruned = apply_result(graph, prune(graph, bundle.calibration,
                                           PruneRequest(method="chita", sparsity=args.sparsity)))
        out = folder / f"{path.stem}_pruned.onnx"
        rep = export_onnx(pruned, images.x[:2], out, verify_batch=images.x[:64], evaluation=images)
        seconds = time.perf_counter() - t0
        base = base or rep.onnx_bytes
        print(f"| {label} | {path.stat().st_size:,} | {_pct(source)} | {rep.onnx_bytes:,} ({rep.compressed_bytes:,}) | "
              f"{rep.onnx_bytes / base:.2f}× | {_pct(rep.onnx_eval)} | {_pct(rep.reference_eval)} | "
              f"{rep.scored_differently} | {rep.interface} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
