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

A second table takes the float32 file's pruned network and exports it four ways: float32
weights (the baseline), sparse storage, float16 weights (``export_onnx(float16=True)``, the
CLI's ``--float16``, the app's File ▸ Float16 weights: float16 initializers read through Casts to
float32) and both, each verified and scored in onnxruntime, and timed there on 64 images.

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

from shared_models import accuracy_text, shared_or_exit  # noqa: E402  (imports core first)

from core.export import evaluate_onnx, export_onnx  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402
from tests.onnx_files import converted_float16  # noqa: E402  (the tests' float16 conversion, onnxruntime's)


def _run_ms(path: Path, x) -> float:
    """Median milliseconds of onnxruntime (CPU) on the batch ``x``, over 30 runs after 3 warm-ups."""
    import statistics

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsity", type=float, default=0.7)
    args = ap.parse_args()
    loaded, bundle = shared_or_exit("resnet20")
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
    first = None  # the float32 file's pruned network
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
        first = first or (pruned, rep.reference_eval)
        print(f"| {label} | {path.stat().st_size:,} | {accuracy_text(source)} | {rep.onnx_bytes:,} ({rep.compressed_bytes:,}) | "
              f"{rep.onnx_bytes / base:.2f}× | {accuracy_text(rep.onnx_eval)} | {accuracy_text(rep.reference_eval)} | "
              f"{rep.scored_differently} | {rep.interface} | {seconds:.1f} |", flush=True)

    pruned, reference = first
    print(f"\nThe float32 file's pruned network (CHITA at {args.sparsity}) exported four ways; "
          f"PyTorch's accuracy {accuracy_text(reference)}\n")
    print("| export | file bytes (deflated) | × float32 weights' | weight tensors in float16 / sparse | "
          "max abs difference from PyTorch (64 images) | accuracy in onnxruntime | images scored differently | "
          "export + verify s | onnxruntime ms per 64 images (× float32 weights') |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base_ms = None
    base = None
    for label, sparse, half in (("float32 weights", False, False), ("sparse storage", True, False),
                                ("float16 weights", False, True), ("float16 weights, sparse storage", True, True)):
        out = folder / f"pruned_{int(sparse)}{int(half)}.onnx"
        rep = export_onnx(pruned, images.x[:2], out, verify_batch=images.x[:64], evaluation=images,
                          reference=reference, sparse=sparse, float16=half)
        base = base or rep.onnx_bytes
        ms = _run_ms(out, images.x[:64])
        base_ms = base_ms or ms
        print(f"| {label} | {rep.onnx_bytes:,} ({rep.compressed_bytes:,}) | {rep.onnx_bytes / base:.2f}× | "
              f"{rep.float16_tensors} / {rep.sparse_tensors} | {rep.max_abs_diff:.2e} | {accuracy_text(rep.onnx_eval)} | "
              f"{rep.scored_differently} | {rep.seconds:.1f} | {ms:.1f} ({ms / base_ms:.2f}×) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
