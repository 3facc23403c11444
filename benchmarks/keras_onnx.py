"""A Keras convnet converted by tf2onnx, opened, pruned and exported as the same kind of file.

Files from Keras reach ONNX through tf2onnx: channels-last images in (N×H×W×C; a grey input is
turned channels first by a Reshape, a colour one by a Transpose), the weights named after the
TensorFlow graph, BatchNorm as Mul and Add, Dense layers as MatMul and Add, a Softmax at the end.
This trains a small Keras convnet (2 convolutions, BatchNorm, 2 dense layers; seeded) on the
calibration split of the data with TensorFlow, converts it with tf2onnx, and opens the file as a
user would (``core.model_io.load_model``): the app's N×C×H×W images are permuted for it.

Then magnitude and CHITA prune the opened graph at each sparsity with the app's defaults
(``core.pruning.prune``, n = 1000 gradient rows or the calibration split if smaller); accuracy
on the evaluation split with its 95% Wilson interval; "vs magnitude": the difference in points on
the same images with its matched-pairs 95% interval. Last, CHITA at ``--export-at`` is exported
(``core.export.export_onnx``, verified and scored in onnxruntime) and the written file's input
(name and layout), outputs and opset are compared with the source's.

TensorFlow and tf2onnx are not the app's dependencies: install them in another environment and
name its Python, e.g.

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx
    python benchmarks/keras_onnx.py --tf-python /tmp/tfenv/bin/python [--data digits]
    python benchmarks/keras_onnx.py --tf-python /tmp/tfenv/bin/python --data ../shared/data/cifar10 --preset resnet20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import onnx  # noqa: E402

from core.data import load_bundle  # noqa: E402
from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.export import evaluate_onnx, export_onnx  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402

TRAIN = """
import sys, numpy as np, tensorflow as tf
data, saved, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = np.load(data)
x, y = d["x"].transpose(0, 2, 3, 1), d["y"]
tf.keras.utils.set_random_seed(0)
m = tf.keras.Sequential([
    tf.keras.Input(x.shape[1:], name="image"),
    tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
    tf.keras.layers.BatchNormalization(),
    tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
    tf.keras.layers.MaxPooling2D(2),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(64, activation="relu"),
    tf.keras.layers.Dense(int(y.max()) + 1, activation="softmax"),
])
m.compile("adam", "sparse_categorical_crossentropy")
m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
m.export(saved)
"""


def _io(path: Path) -> str:
    proto = onnx.load(str(path))
    dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return (f"input `{proto.graph.input[0].name}` {'×'.join(map(str, dims))}, outputs "
            f"{', '.join(f'`{o.name}`' for o in proto.graph.output)}, opset {opset}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tf-python", required=True, help="a Python with tensorflow and tf2onnx")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--preset", default=None, help="normalisation preset of --data (default: its own)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    ap.add_argument("--export-at", type=float, default=0.8)
    args = ap.parse_args()
    sparsities = [float(s) for s in args.sparsities.split(",")]

    bundle = load_bundle(args.data, preset=args.preset)
    work = Path(tempfile.mkdtemp(prefix="keras_onnx_"))
    np.savez(work / "train.npz", x=bundle.calibration.x.numpy(), y=bundle.calibration.y.numpy())
    t0 = time.perf_counter()
    subprocess.run([args.tf_python, "-c", TRAIN, str(work / "train.npz"), str(work / "saved"), str(args.epochs)],
                   check=True, capture_output=True)
    subprocess.run([args.tf_python, "-m", "tf2onnx.convert", "--saved-model", str(work / "saved"),
                    "--output", str(work / "keras.onnx"), "--opset", "13"], check=True, capture_output=True)
    print(f"trained and converted in {time.perf_counter() - t0:.0f} s: {work / 'keras.onnx'}", file=sys.stderr)

    source = work / "keras.onnx"
    loaded = load_model(source)
    model = loaded.model
    ops = sorted({n.op_type for n in onnx.load(str(source)).graph.node})
    dense = evaluate(model, bundle.evaluation)
    in_ort = evaluate_onnx(source, bundle.evaluation)
    n = len(bundle.evaluation)
    print(f"## A Keras convnet from tf2onnx ({bundle.name})\n")
    print(f"Command: `python benchmarks/keras_onnx.py --tf-python PY --data {args.data}"
          + (f" --preset {args.preset}" if args.preset else "") + "` (2 cores, no GPU).\n")
    print(f"Source file: {_io(source)}; operators {', '.join(ops)}. Opened with input shape "
          f"{'×'.join(map(str, loaded.input_shape))} (channels first; the file's own layout is "
          f"{'kept' if getattr(model, 'input_permutation', None) else 'not channels last'}).\n")
    print(f"Dense: {100 * dense.accuracy:.2f}% [{100 * dense.accuracy_ci[0]:.1f}, {100 * dense.accuracy_ci[1]:.1f}] "
          f"on {n} images opened in the app; the source file in onnxruntime: {100 * in_ort.accuracy:.2f}% "
          f"({sum(a != b for a, b in zip(dense.hits, in_ort.hits))} images scored differently).\n")
    print("| method | sparsity | accuracy [95% CI] | vs magnitude [95% CI] | seconds |")
    print("| --- | --- | --- | --- | --- |")
    results = {}
    for s in sparsities:
        mag_ev = None
        for method in ("magnitude", "chita"):
            t = time.perf_counter()
            res = prune(model, bundle.calibration, PruneRequest(method=method, sparsity=s, samples=1000))
            secs = time.perf_counter() - t
            ev = evaluate(apply_result(model, res), bundle.evaluation)
            results[(method, s)] = res
            vs = "—"
            if method == "magnitude":
                mag_ev = ev
            else:
                d = paired_difference(ev, mag_ev)
                vs = f"{100 * d.difference:+.2f} [{100 * d.ci[0]:+.1f}, {100 * d.ci[1]:+.1f}]"
            print(f"| {method} | {s} | {100 * ev.accuracy:.2f} [{100 * ev.accuracy_ci[0]:.1f}, "
                  f"{100 * ev.accuracy_ci[1]:.1f}] | {vs} | {secs:.1f} |", flush=True)
    res = results.get(("chita", args.export_at)) or prune(
        model, bundle.calibration, PruneRequest(method="chita", sparsity=args.export_at, samples=1000))
    out = work / "pruned.onnx"
    report = export_onnx(apply_result(model, res), bundle.evaluation.x[:2], out,
                         verify_batch=bundle.evaluation.x[:16], evaluation=bundle.evaluation)
    print(f"\nCHITA at {args.export_at} exported: {_io(out)}; {report.onnx_bytes:,} bytes "
          f"(source {source.stat().st_size:,}); in onnxruntime {100 * report.onnx_eval.accuracy:.2f}% "
          f"against PyTorch's {100 * report.reference_eval.accuracy:.2f}% "
          f"({report.scored_differently} images scored differently); max |Δ| {report.max_abs_diff:.1e}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
