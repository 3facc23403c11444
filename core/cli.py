"""The ``chita-studio`` command.

Without a subcommand it opens the desktop app (``gui.app.run_app``, imported only then).
Subcommands work headless:

* ``info MODEL`` — format, architecture, input shape and the layer table;
* ``eval MODEL --data DATA`` — top-1 accuracy with its 95% interval, and the loss;
* ``export MODEL --out FILE.onnx`` — ONNX export verified in onnxruntime.

``MODEL`` is a file, ``demo`` / ``demo:digits_mlp`` / ``demo:digits_cnn`` (built in) or
``torchvision:NAME``. Every subcommand takes ``--json``. Exit codes: 0 success, 2 a problem the user
can fix (one paragraph on stderr, no traceback), 130 cancelled (Ctrl-C), 1 an unexpected error.

New subcommands (``prune``, ``sweep``) go in :func:`add_pruning_commands`; they reuse
:func:`add_model_arguments`, :func:`add_data_arguments`, :func:`model_from_args`,
:func:`bundle_from_args`, :func:`evaluation_from_args`, :func:`interruptible`, :class:`TextProgress`
and :func:`emit`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TextIO

from core.errors import Cancelled, StudioError
from core.progress import CancelToken, EtaEstimator, Progress, ProgressFn

if TYPE_CHECKING:  # the heavy modules are imported when a command runs
    from core.data import DataBundle, ImageSet
    from core.model_io import LoadedModel

PROG = "chita-studio"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader went away
DEMO_ALIAS = "demo"
DEFAULT_DEMO = "digits_mlp"
VERIFY_IMAGES = 32  # images run in onnxruntime when exporting
FLOAT16_HELP = ("store the weights in float16, each read through a Cast to float32: about half the file, "
                "computed in float32 as before, each weight rounded to float16 (checked in onnxruntime)")

# --------------------------------------------------------------------------------------------
# progress and cancellation


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TextProgress:
    """A :data:`core.progress.ProgressFn` that prints progress on a text stream (stderr).

    On a terminal: one line rewritten in place (a bar, percent, ETA), at most ``1 / interval``
    updates per second. Otherwise (a log file, a pipe): a plain line when a stage starts, at most
    one every ``log_interval`` seconds while it runs, and one when it ends. ``quiet`` prints nothing.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        interval: float = 0.2,
        log_interval: float = 10.0,
        width: int = 28,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.interval = interval if self.tty else log_interval
        self.width = width
        self._clock = clock
        self._eta = EtaEstimator()
        self._stage: str | None = None
        self._stage_start = 0.0
        self._last = -math.inf
        self._finished = False
        self._line_open = False

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if p.stage == "done":  # the end of a whole job, not a stage: the results follow
            self._end_line()
            self._stage = None
            return
        now = self._clock()
        eta = self._eta.update(p, now)
        new_stage = p.stage != self._stage
        if new_stage:
            self._end_line()
            self._stage, self._stage_start, self._finished = p.stage, now, False
        done = p.total > 0 and p.done >= p.total
        if done and self._finished:
            return
        if not (new_stage or done or now - self._last >= self.interval):
            return
        self._last = now
        self._finished = done
        if self.tty:
            self._write_tty(p, eta, now, done)
        else:
            self._write_log(p, eta, now, done)

    def close(self) -> None:
        """End the progress line (call before printing results)."""
        self._end_line()

    def __enter__(self) -> TextProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_tty(self, p: Progress, eta: float | None, now: float, done: bool) -> None:
        if p.indeterminate:  # unknown length: elapsed time, no bar and no ETA
            text = f"{p.stage}: {_format_seconds(now - self._stage_start)}"
        else:
            filled = int(round(p.fraction * self.width))
            bar = "#" * filled + "." * (self.width - filled)
            if done:
                tail = f"done in {_format_seconds(now - self._stage_start)}"
            else:
                tail = f"ETA {_format_seconds(eta)}" if eta is not None else "ETA --:--"
            text = f"{p.stage} [{bar}] {100 * p.fraction:5.1f}%  {tail}"
        if p.message:
            text += f"  {p.message}"
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._line_open = True
        if done:
            self._end_line()

    def _write_log(self, p: Progress, eta: float | None, now: float, done: bool) -> None:
        if done:
            text = f"{p.stage}: done in {_format_seconds(now - self._stage_start)}"
        elif p.indeterminate:
            text = f"{p.stage}: {_format_seconds(now - self._stage_start)} so far"
        else:
            text = f"{p.stage}: {100 * p.fraction:.0f}%"
            if eta is not None:
                text += f", about {_format_seconds(eta)} left"
        if p.message:
            text += f" ({p.message})"
        self.stream.write(text + "\n")
        self.stream.flush()

    def _end_line(self) -> None:
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False


@contextlib.contextmanager
def interruptible() -> Iterator[CancelToken]:
    """A :class:`CancelToken` that the first Ctrl-C sets (the work then stops at its next check and
    raises ``Cancelled``); a second Ctrl-C interrupts at once. The previous handler is restored."""
    token = CancelToken()

    def on_sigint(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        sys.stderr.write("\nCancelling… (press Ctrl-C again to stop at once)\n")

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield token
        return
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------
# argument groups and loaders shared by the subcommands


class _UsageError(Exception):
    """A command-line usage problem (reported like a StudioError, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one paragraph."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}. See '{self.prog} --help'.")


def _int_tuple(text: str) -> tuple[int, ...]:
    parts = [p for p in text.replace("x", ",").replace("×", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 3,32,32") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 3,32,32")
    return shape


def _float_list(text: str) -> list[float]:
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number or a comma-separated list") from None


def _update_scale(text: str) -> float | None:
    """``--update-scale``: ``auto`` (None) or a number in [0, 1]."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] or 'auto', not {value:g}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--quiet``."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``MODEL``, ``--arch``, ``--trust-pickle``, ``--input-shape``."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a model file (.pt/.pth state_dict, TorchScript, .pt2, pickle), 'demo', "
        "'demo:digits_mlp', 'demo:digits_cnn' or 'torchvision:NAME'",
    )
    parser.add_argument(
        "--arch", help="architecture of a state_dict file (mlpnet, resnet20, a torchvision name, package.module:Class)"
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow loading a pickled model, which runs code from the file (only for files you trust)",
    )
    parser.add_argument(
        "--input-shape", type=_int_tuple, metavar="C,H,W", help="one input sample's shape, e.g. 3,32,32"
    )


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True, calibration: bool = False) -> None:
    """``--data`` and its normalisation and size options (``--max-calibration`` with ``calibration``)."""
    parser.add_argument(
        "--data",
        required=required,
        metavar="DATA",
        help="digits, mnist, cifar10, a folder (MNIST IDX, CIFAR-10 batches, train/test .npz, ImageFolder) or a file",
    )
    parser.add_argument("--eval-data", metavar="DATA", help="evaluation images from another source than --data")
    parser.add_argument(
        "--preset", help="normalisation preset: mlpnet, resnet20, digits, imagenet (default: the model's)"
    )
    parser.add_argument("--mean", type=_float_list, nargs="+", help="per-channel mean, overriding the preset")
    parser.add_argument("--std", type=_float_list, nargs="+", help="per-channel std, overriding the preset")
    parser.add_argument("--max-eval", type=_positive_int, metavar="N", help="evaluate on the first N test images only")
    parser.add_argument("--class-names", dest="class_names", metavar="NAMES|FILE",
                        help="name the classes, in label order: comma-separated (airplane,automobile,…) or a "
                        "text file with one per line (per-class tables show them instead of numbers)")
    if calibration:
        parser.add_argument(
            "--max-calibration", type=_positive_int, metavar="N", help="use at most N calibration images"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the calibration sample (default 0)")
    parser.add_argument("--download", action="store_true", help="allow downloading mnist/cifar10 through torchvision")


def _flat(values: Sequence[Sequence[float]] | None) -> list[float] | None:
    return None if values is None else [v for group in values for v in group]


def model_from_args(
    args: argparse.Namespace, progress: ProgressFn | None = None, cancel: CancelToken | None = None
) -> LoadedModel:
    """Load the :class:`core.model_io.LoadedModel` named by ``args.model`` (``demo`` names included)."""
    from core.model_io import load_model

    source = str(args.model)
    if source == DEMO_ALIAS and not os.path.exists(source):
        source = f"demo:{DEFAULT_DEMO}"
    shape = getattr(args, "input_shape", None)
    if source.startswith("demo:") and not os.path.exists(source):
        from core.demo import load_demo

        loaded = load_demo(source[len("demo:"):], progress=progress, cancel=cancel)
        if shape is not None:
            from dataclasses import replace

            loaded = replace(loaded, input_shape=tuple(shape))
        return loaded
    return load_model(
        source,
        arch=getattr(args, "arch", None),
        trust_pickle=bool(getattr(args, "trust_pickle", False)),
        input_shape=shape,
    )


def _data_options(args: argparse.Namespace, loaded: LoadedModel) -> dict[str, Any]:
    return {
        "preset": args.preset or loaded.preset,
        "mean": _flat(args.mean),
        "std": _flat(args.std),
        "input_shape": tuple(loaded.input_shape) or None,
        "max_evaluation": args.max_eval,
        "download": bool(args.download),
    }


def evaluation_from_args(args: argparse.Namespace, loaded: LoadedModel) -> ImageSet:
    """Evaluation images (``--eval-data``, else ``--data``) as an ImageSet, checked against the
    model; classes named by the model where the data does not name them in words (ImageNet)."""
    from core.data import load_evaluation, named_by_model

    source = args.eval_data or args.data
    images = load_evaluation(source, **_data_options(args, loaded), class_names=_class_names(args))
    _check_images(images, loaded)
    return named_by_model(images, loaded.class_names)


def _class_names(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``--class-names`` read (core.data.read_class_names), or None."""
    from core.data import read_class_names

    text = getattr(args, "class_names", None)
    return None if not text else read_class_names(text)


def bundle_from_args(args: argparse.Namespace, loaded: LoadedModel) -> DataBundle:
    """Calibration and evaluation images named by ``args`` as a DataBundle, checked against the
    model; classes named by the model where the data does not name them in words (ImageNet)."""
    from core.data import bundle_named_by_model, check_compatible, load_bundle

    options = _data_options(args, loaded)
    bundle = load_bundle(
        args.data,
        eval_source=args.eval_data,
        max_calibration=getattr(args, "max_calibration", None),
        seed=getattr(args, "seed", 0),
        class_names=_class_names(args),
        **options,
    )
    check_compatible(bundle, loaded.model, input_shape=loaded.input_shape or bundle.input_shape,
                     num_classes=loaded.num_classes)
    return bundle_named_by_model(bundle, loaded.class_names)


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(d)) for d in shape)


def _check_images(images: ImageSet, loaded: LoadedModel) -> None:
    shape = tuple(int(d) for d in images.x.shape[1:])
    if loaded.input_shape and shape != tuple(loaded.input_shape):
        raise StudioError(
            f"The images are {_shape_text(shape)} but the model takes {_shape_text(loaded.input_shape)}.",
            path=images.source,
            field="x",
            fix="Load data that matches the model (see --preset), or the model trained on this data.",
        )
    if loaded.num_classes is not None and len(images) and int(images.y.max()) >= loaded.num_classes:
        raise StudioError(
            f"Labels go up to {int(images.y.max())} but the model has {loaded.num_classes} classes.",
            path=images.source,
            field="y",
            fix="Use data whose labels are class indices of this model.",
        )


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print the result: ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=_json_default))
    else:
        print(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _progress_for(args: argparse.Namespace) -> TextProgress:
    return TextProgress(quiet=bool(getattr(args, "quiet", False)))


# --------------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace) -> int:
    """``info MODEL``: what the model is and its layer table."""
    from core.fisher import rows_that_fit
    from core.model_io import describe_layers

    with _progress_for(args) as progress, interruptible() as cancel:
        loaded = model_from_args(args, progress, cancel)
    layers = describe_layers(loaded.model)
    prunable = [layer for layer in layers if layer.prunable]
    data = {
        "source": loaded.source,
        "format": loaded.format,
        "arch": loaded.arch,
        "input_shape": list(loaded.input_shape) or None,
        "preset": loaded.preset,
        "num_classes": loaded.num_classes,
        "total_params": sum(layer.params for layer in layers),
        "prunable_tensors": len(prunable),
        "prunable_weights": sum(layer.params for layer in prunable),
        # what CHITA, CHITA++ and WoodFisher may take as --samples here (half the available
        # RAM), for the weights a run prunes by default (ResNet20's preset keeps its downsample
        # convs dense)
        "samples_that_fit": rows_that_fit(_default_weights(loaded) or
                                          sum(layer.params for layer in prunable)),
        "gradient_rows": _gradient_path(loaded),
        "layers": [
            {"name": l.name, "type": l.type, "shape": list(l.shape), "params": l.params, "prunable": l.prunable}
            for l in layers
        ],
    }
    data["sparsity_patterns"] = _held_patterns(loaded.model, prunable)
    steps = getattr(loaded.model, "steps", None)
    if loaded.format == "onnx" and steps is not None:  # an ONNX graph run as it is (core.onnx_import)
        import collections

        data["onnx_ops"] = dict(collections.Counter(op for op, *_ in steps).most_common())
        data["outputs_probabilities"] = bool(getattr(loaded.model, "outputs_probabilities", False))
        data["channels_last_file"] = getattr(loaded.model, "input_permutation", None) is not None
        data["float16_file"] = bool(getattr(loaded.model, "float16_io", False))
        data["float16_weights_file"] = bool(getattr(loaded.model, "float16_weights", False))
        data["float16_storage_file"] = bool(getattr(loaded.model, "float16_storage", False))
        data["fixed_batch"] = getattr(loaded.model, "fixed_batch", None)
        data["onnx_outputs"] = [loaded.model.output_name, *loaded.model.extra_outputs]
    emit(args, data, _info_text(data))
    return EXIT_OK


def _held_patterns(model: Any, prunable: Sequence[Any]) -> dict[str, list[str]]:
    """The N:M patterns (2:4, …) the prunable weights keep in every block: pattern → weights
    without blocks of M (core.sparsity_pattern.held_patterns)."""
    from core.sparsity_pattern import held_patterns

    params = dict(model.named_parameters())
    return held_patterns({layer.name: params[layer.name] for layer in prunable if layer.name in params})


def _gradient_path(loaded: Any) -> str | None:
    """How a run's per-sample gradients are made for the weights it prunes by default:
    ``closed_form`` (one product per layer and image), ``func`` (torch.func over the whole
    network), ``loop`` (TorchScript: one backward pass per image), ``first_images`` (an ONNX
    graph of open input size: decided when it sees images); None if unknown."""
    import torch

    from core.fisher import supports_closed_form
    from core.pruning import default_layers

    try:
        names = default_layers(loaded.model, loaded.arch)
    except Exception:  # noqa: BLE001 - unusual models: not worth failing `info` over
        return None
    if not names:
        return None
    if hasattr(loaded.model, "batch_layouts") and loaded.model.batch_layouts is None:
        return "first_images"
    if supports_closed_form(loaded.model, names):
        return "closed_form"
    return "loop" if isinstance(loaded.model, torch.jit.ScriptModule) else "func"


def _default_weights(loaded: Any) -> int:
    """How many weights a run on ``loaded`` prunes when it names no layers (0 if unknown)."""
    from core.pruning import default_layers

    try:
        names = set(default_layers(loaded.model, loaded.arch))
    except Exception:  # unusual models: the caller falls back on the layer table's flags
        return 0
    return sum(p.numel() for n, p in loaded.model.named_parameters() if n in names)


_GRADIENT_PATHS = {
    "closed_form": "closed form, one product per layer and image",
    "func": "torch.func over the whole network (some pruned layer is not a Linear or Conv2d whose input keeps "
            "the images where the closed form finds them: slower, the same rows)",
    "loop": "one backward pass per image (TorchScript)",
    "first_images": "decided on the first images (the graph's input size is open): closed form where its layers "
                    "keep the images where it finds them, else torch.func",
}


def _info_text(d: dict[str, Any]) -> str:
    shape = _shape_text(d["input_shape"]) if d["input_shape"] else "unknown (give --input-shape C,H,W)"
    lines = [
        f"Model:        {d['source']}",
        f"Format:       {d['format']}",
        f"Architecture: {d['arch'] or 'unknown'}",
        f"Input shape:  {shape} (one sample"
        + ("; the file takes it channels last, H×W×C: images are permuted for it, and exports keep its layout"
           if d.get("channels_last_file") else "")
        + ("; the file is float16: it runs in float32, and exports are written in float16" if d.get("float16_file")
           else "; the file keeps its weights in float16 (float32 in and out): it runs in float32, and exports "
           "are written so again" if d.get("float16_weights_file")
           else "; the file stores its weights in float16 and computes in float32: it runs so, and exports store "
           "them so again" if d.get("float16_storage_file") else "")
        + (f"; the file fixes its batch at {d['fixed_batch']}: the graph runs on any batch, and exports leave it "
           "open" if d.get("fixed_batch") else "") + ")",
        f"Preset:       {d['preset'] or 'none (give --preset or --mean/--std for data)'}",
        f"Classes:      {d['num_classes'] if d['num_classes'] is not None else 'unknown'}",
    ]
    for pattern, without in (d.get("sparsity_patterns") or {}).items():
        lines.append(f"Pattern:      {pattern} holds in every block of the prunable weights"
                     + (f" ({', '.join(without[:3])}{', …' if len(without) > 3 else ''} "
                        f"{'has' if len(without) == 1 else 'have'} no blocks of {pattern.split(':')[1]})"
                        if without else ""))
    if "onnx_ops" in d:
        ops = d["onnx_ops"]
        lines.append(f"ONNX graph:   {sum(ops.values())} nodes run with PyTorch ("
                     + ", ".join(f"{op} {n}" for op, n in ops.items()) + ")"
                     + ("; ends in Softmax: its probabilities' log is taken as logits" if d["outputs_probabilities"]
                        else ""))
        if len(d["onnx_outputs"]) > 1:
            lines.append(f"Outputs:      {', '.join(d['onnx_outputs'])} (the first is pruned on; exports keep them all)")
    lines.append("")
    rows = [("name", "type", "shape", "params", "prunable")] + [
        (l["name"], l["type"], _shape_text(l["shape"]) or "scalar", f"{l['params']:,}", "yes" if l["prunable"] else "")
        for l in d["layers"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                 row[3].rjust(widths[3]), row[4]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        f"Total parameters: {d['total_params']:,}",
        f"Prunable:         {d['prunable_tensors']} tensors, {d['prunable_weights']:,} weights",
        f"Samples that fit: {d['samples_that_fit']:,} gradient rows in half the available RAM "
        "(--samples for chita, chita++, woodfisher)",
    ]
    if d["gradient_rows"]:
        lines.append("Gradient rows:    " + _GRADIENT_PATHS[d["gradient_rows"]])
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# eval


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval MODEL --data DATA``: accuracy with its 95% interval, and the loss."""
    from core.evaluate import evaluate

    with _progress_for(args) as progress, interruptible() as cancel:
        loaded = model_from_args(args, progress, cancel)
        images = evaluation_from_args(args, loaded)
        result = evaluate(loaded.model, images, batch_size=args.batch_size, progress=progress, cancel=cancel)
    lo, hi = result.accuracy_ci
    data = {
        "model": loaded.source,
        "data": images.source,
        "n": result.n,
        "correct": result.correct,
        "accuracy": result.accuracy,
        "accuracy_ci": list(result.accuracy_ci),
        "accuracy_percent": round(100 * result.accuracy, 4),
        "loss": result.loss,
        "loss_ci": list(result.loss_ci),
        "seconds": result.seconds,
    }
    text = "\n".join([
        f"Model:    {loaded.source}",
        f"Data:     {images.source}",
        f"Accuracy: {100 * result.accuracy:.2f}% (95% interval {100 * lo:.2f}–{100 * hi:.2f}%), "
        f"{result.correct:,} of {result.n:,} images",
        f"Loss:     {result.loss:.4f} (95% interval {result.loss_ci[0]:.4f}–{result.loss_ci[1]:.4f})",
        f"Time:     {result.seconds:.1f} s",
    ])
    if args.per_class:
        from core.class_accuracy import class_rows, class_scores, class_table

        scores = class_scores(result, images.y, names=images.class_names)
        data["per_class"] = class_rows(scores)
        text += f"\nPer class ({len(scores)} classes, Wilson 95% intervals):\n" + class_table(scores, "accuracy")
    emit(args, data, text)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# compare


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare MODEL OTHER --data DATA``: both on the same test images, OTHER against MODEL."""
    from core.class_accuracy import (
        class_rows,
        class_scores,
        class_table,
        describe_classes,
    )
    from core.evaluate import agreement, evaluate, paired_difference
    from core.prunable import weight_zero_fraction

    _check_output_file(args.lost_images, "--lost-images", (".png",))
    with _progress_for(args) as progress, interruptible() as cancel:
        ref = model_from_args(args, progress, cancel)
        other = model_from_args(argparse.Namespace(**{**vars(args), "model": args.other}), progress, cancel)
        images = evaluation_from_args(args, ref)
        _check_images(images, other)
        ev_ref = evaluate(ref.model, images, progress=progress, cancel=cancel)
        ev_other = evaluate(other.model, images, progress=progress, cancel=cancel)
    change = paired_difference(ev_other, ev_ref)
    agree = agreement(ev_other, ev_ref)
    classes = class_scores(ev_other, images.y, reference=ev_ref, names=images.class_names)
    zeros = [weight_zero_fraction(ref.model), weight_zero_fraction(other.model)]

    def pct(e: Any) -> str:
        return f"{100 * e.accuracy:.2f}% (95% interval {100 * e.accuracy_ci[0]:.2f}–{100 * e.accuracy_ci[1]:.2f}%)"

    def zero_text(z: float | None) -> str:
        return "" if z is None else f"; {100 * z:.1f}% of its weights are zero"

    data = {
        "model": ref.source, "other": other.source, "data": images.source, "n": ev_ref.n,
        "accuracy": ev_ref.accuracy, "accuracy_ci": list(ev_ref.accuracy_ci),
        "other_accuracy": ev_other.accuracy, "other_accuracy_ci": list(ev_other.accuracy_ci),
        "change": change.difference, "change_ci": list(change.ci),
        "images_gained": change.a_only, "images_lost": change.b_only,
        "agreement": agree, "weight_zeros": zeros[0], "other_weight_zeros": zeros[1],
        "classes_clearly_lower": [c.name for c in classes if c.clear and c.change.difference < 0],
        "classes_clearly_higher": [c.name for c in classes if c.clear and c.change.difference > 0],
    }
    lines = [
        f"Model:      {ref.source}: {pct(ev_ref)}{zero_text(zeros[0])}",
        f"Other:      {other.source}: {pct(ev_other)}{zero_text(zeros[1])}",
        f"Data:       {images.source}",
        f"Change:     {change.describe(ref.source)}",
        f"Agreement:  {100 * agree:.2f}% of the {ev_ref.n:,} images get the same class from both",
        f"Classes:    {describe_classes(classes)}" + ("" if args.per_class else " (--per-class for the table)"),
    ]
    if args.per_class:
        data["per_class"] = class_rows(classes)
        lines.append(f"Per class ({len(classes)} classes; the other against the model on the class's images, "
                     "paired 95% interval; clear: excludes 0 after allowing for all the classes):\n"
                     + class_table(classes, "other", "model"))
    if args.lost_images:
        data["lost_images"], line = write_lost_images(args.lost_images, ev_other, ev_ref, images,
                                                      what=f"MODEL ({Path(ref.source).name})",
                                                      other=f"OTHER ({Path(other.source).name})")
        lines.append(line)
    emit(args, data, "\n".join(lines))
    return EXIT_OK


def write_lost_images(path: str, result: Any, reference: Any, images: ImageSet, *, normalization: Any = None,
                      what: str = "the dense model", other: str = "the pruned one",
                      field: str = "--lost-images") -> tuple[dict[str, Any], str]:
    """``--lost-images``: the images ``result`` gets wrong where ``reference`` gets them right, as a
    PNG contact sheet (core.changed_images); its ``--json`` fields and its report line."""
    from core.changed_images import changed_images, write_contact_sheet

    lost = changed_images(result, reference, images.y)
    shown = write_contact_sheet(path, images, lost, normalization=normalization, field=field,
                                title=f"{len(lost)} images {other} lost against {what}: true class, and as what "
                                "it is now predicted")
    line = (f"Lost:       {len(lost):,} images {what} gets right and {other} not, in {path}"
            + (f" ({shown} drawn, each class with its share)" if shown < len(lost) else ""))
    return {"path": path, "images": len(lost), "shown": shown}, line


# --------------------------------------------------------------------------------------------
# export


def export_fields(report: Any) -> dict[str, Any]:
    """An ExportReport in ``--json`` output (prune --out, sweep --export-dir)."""
    return {"path": report.path, "onnx_bytes": report.onnx_bytes, "compressed_bytes": report.compressed_bytes,
            "max_abs_diff": report.max_abs_diff, "storage": "sparse" if report.sparse else "dense",
            "sparse_tensors": report.sparse_tensors, "float16_tensors": report.float16_tensors,
            "sparsity_patterns": dict(report.patterns),
            "opset": report.opset, "interface": report.interface, **onnx_accuracy_fields(report)}


def onnx_accuracy_fields(report: Any) -> dict[str, Any]:
    """An ExportReport's accuracy in onnxruntime for ``--json`` (empty without an evaluation)."""
    if report.onnx_eval is None:
        return {}
    return {"onnx_accuracy": report.onnx_eval.accuracy, "onnx_accuracy_ci": list(report.onnx_eval.accuracy_ci),
            "pytorch_accuracy": report.reference_eval.accuracy, "scored_differently": report.scored_differently}


def cmd_export(args: argparse.Namespace) -> int:
    """``export MODEL --out FILE.onnx``: verified ONNX export."""
    import torch

    from core.export import (
        describe_onnx_accuracy,
        describe_storage,
        export_onnx,
        human_bytes,
    )

    _check_output_file(args.out, "--out")
    with _progress_for(args) as progress, interruptible() as cancel:
        loaded = model_from_args(args, progress, cancel)
        if args.data:
            images = evaluation_from_args(args, loaded)
            batch = images.x[:VERIFY_IMAGES]
            verify_source = f"the first {len(batch)} images of {images.source}"
        else:
            if not loaded.input_shape:
                raise StudioError(
                    "The model's input shape is unknown, so no verification batch can be made.",
                    path=loaded.source,
                    field="input_shape",
                    fix="Give --input-shape C,H,W, or --data with images for the model.",
                )
            generator = torch.Generator().manual_seed(0)
            batch = torch.randn(VERIFY_IMAGES, *loaded.input_shape, generator=generator)
            verify_source = f"{VERIFY_IMAGES} random inputs of shape {_shape_text(loaded.input_shape)}"
        report = export_onnx(loaded.model, batch[:2], args.out, verify_batch=batch, opset=args.opset,
                             sparse=args.sparse_storage, float16=args.float16,
                             evaluation=images if args.data else None,
                             progress=progress, cancel=cancel)
        latency = None
        if args.latency:
            from core.latency import measure_latency

            latency = measure_latency([report.path], _latency_images(batch, args.latency_batch),
                                      progress=progress, cancel=cancel)[0]
    weights = sum(loaded.model.get_parameter(n).numel() for n in report.zero_fractions)
    zeros = sum(f[0] * loaded.model.get_parameter(n).numel() for n, f in report.zero_fractions.items())
    data = {
        "path": report.path,
        "onnx_bytes": report.onnx_bytes,
        "compressed_bytes": report.compressed_bytes,
        "max_abs_diff": report.max_abs_diff,
        "verified": True,
        "verify_data": verify_source,
        "verify_batch_size": report.verify_batch_size,
        "opset": report.opset,
        "interface": report.interface,
        "exporter": report.exporter,
        "storage": "sparse" if report.sparse else "dense",
        "sparse_tensors": report.sparse_tensors,
        "float16_tensors": report.float16_tensors,
        "sparsity_patterns": dict(report.patterns),
        **onnx_accuracy_fields(report),
        "sparsity": zeros / weights if weights else 0.0,
        "zero_fractions": {k: list(v) for k, v in report.zero_fractions.items()},
        "seconds": report.seconds,
    }
    if latency is not None:
        data["latency"] = latency_fields(latency)
    text = "\n".join([
        f"Wrote:     {report.path}",
        f"Size:      {report.onnx_bytes:,} bytes ({human_bytes(report.onnx_bytes)}); "
        f"compressed (deflate) {report.compressed_bytes:,} bytes ({human_bytes(report.compressed_bytes)})",
        f"Storage:   {describe_storage(report)}",
        f"Verified:  onnxruntime matches PyTorch, max |difference| {report.max_abs_diff:.2g} "
        f"on {verify_source}",
        *([f"Accuracy:  {describe_onnx_accuracy(report)}"] if report.onnx_eval is not None else []),
        f"Zeros:     {len(report.zero_fractions)} prunable weight tensors keep their zeros exactly "
        f"({100 * data['sparsity']:.1f}% zeros overall)",
        f"Graph:     {report.interface}",
        f"Exporter:  {report.exporter}, opset {report.opset}; {report.seconds:.1f} s",
        *([f"Latency:   {latency.describe()} in onnxruntime on this CPU"] if latency is not None else []),
    ])
    emit(args, data, text)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# layer sensitivity

SENSITIVITY_IMAGES = 1000  # core.sensitivity.SENSITIVITY_IMAGES (not imported here: torch loads late)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """``sensitivity MODEL --data DATA``: each layer pruned alone by magnitude, scored on
    calibration images (never the evaluation images), its loss and accuracy change."""
    import csv

    from core.pruning import default_layers
    from core.sensitivity import layer_sensitivity, scan_images

    for s in args.sparsities:
        if not 0.0 <= s < 1.0:
            raise StudioError(f"sparsity {s} is outside [0, 1)", field="--sparsities",
                              fix="give fractions of weights to remove, e.g. 0.5,0.9.")
    _check_output_file(args.csv, "--csv")
    with _progress_for(args) as progress, interruptible() as cancel:
        loaded = model_from_args(args, progress, cancel)
        bundle = bundle_from_args(args, loaded)
        layers = ([n.strip() for n in args.layers.split(",") if n.strip()] if args.layers
                  else default_layers(loaded.model, loaded.arch))
        params = dict(loaded.model.named_parameters())
        bad = [n for n in layers if n not in params]
        if bad:
            raise StudioError(f"the model has no parameters named {', '.join(bad[:5])}", field="--layers",
                              fix="use weight names from `chita-studio info MODEL`.")
        images = scan_images(bundle.calibration, args.images)
        res = layer_sensitivity(loaded.model, images, layers, args.sparsities, progress=progress, cancel=cancel)
    rows = [{"layer": r.layer, "weights": r.weights, "sparsity": r.sparsity, "loss": r.eval.loss,
             "loss_change": r.loss_change, "accuracy": r.eval.accuracy, "accuracy_ci": list(r.eval.accuracy_ci),
             "accuracy_change": r.accuracy_change.difference, "accuracy_change_ci": list(r.accuracy_change.ci)}
            for r in res.rows]
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["layer", "weights", "sparsity", "loss", "loss_change", "accuracy", "accuracy_lo",
                        "accuracy_hi", "accuracy_change", "change_lo", "change_hi"])
            for r in rows:
                w.writerow([r["layer"], r["weights"], r["sparsity"], r["loss"], r["loss_change"], r["accuracy"],
                            *r["accuracy_ci"], r["accuracy_change"], *r["accuracy_change_ci"]])
    data = {"model": loaded.source, "images": res.images, "n": res.dense.n, "dense_loss": res.dense.loss,
            "dense_accuracy": res.dense.accuracy, "sparsities": list(args.sparsities), "rows": rows}
    width = max(len("layer"), *(len(n) for n in layers))
    head = "".join(f"{f'loss Δ at {100 * s:.0f}%':>16}{'accuracy Δ, points':>20}" for s in args.sparsities)
    lines = [f"Model:  {loaded.source}",
             f"Images: {res.images}; dense loss {res.dense.loss:.4f}, accuracy {100 * res.dense.accuracy:.2f}%",
             "", f"{'layer':<{width}}{'weights':>11}{head}"]
    for name in layers:
        cells = ""
        for s in args.sparsities:
            r = next(r for r in res.rows if r.layer == name and r.sparsity == s)
            cells += f"{r.loss_change:>+16.4f}{100 * r.accuracy_change.difference:>+20.2f}"
        lines.append(f"{name:<{width}}{params[name].numel():>11,}{cells}")
    top = res.ranked(max(args.sparsities))
    lines += ["", f"Costliest at {100 * max(args.sparsities):.0f}%: "
              + ", ".join(f"{r.layer} (loss {r.loss_change:+.3f})" for r in top[:3])
              + ". Each layer is pruned alone by magnitude, others whole, no BatchNorm recalibration; "
              "keep the costly ones dense with --keep-first / --keep-last / --layers, or the app's table menu."]
    emit(args, data, "\n".join(lines))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# parser and entry point


def add_latency_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--latency`` and ``--latency-batch`` (``what``: the files timed, for the help)."""
    parser.add_argument("--latency", action="store_true",
                        help=f"time {what} in onnxruntime on this CPU (median of alternating rounds, "
                        "about 2 s)")
    parser.add_argument("--latency-batch", dest="latency_batch", type=_positive_int, default=1, metavar="N",
                        help="images per run for --latency (default 1)")


def _latency_images(batch: Any, size: int) -> Any:
    """``size`` images for timing, the verification batch's repeated where it has fewer."""
    import torch

    return batch[torch.arange(size) % len(batch)]


def latency_fields(lat: Any, dense: Any = None) -> dict[str, Any]:
    """A core.latency.Latency in ``--json`` (with the dense model's beside it, and the ratio)."""
    out = {"batch": lat.batch, "median_ms": lat.median_ms, "q1_ms": lat.q1_ms, "q3_ms": lat.q3_ms,
           "runs": lat.runs}
    if dense is not None:
        out.update({"dense_median_ms": dense.median_ms, "dense_q1_ms": dense.q1_ms,
                    "dense_q3_ms": dense.q3_ms, "ratio_to_dense": lat.median_ms / dense.median_ms})
    return out


PER_CLASS_HELP = ("also score each class apart: its accuracy with its 95%% interval{} (a table, and "
                  "per_class in --json)")  # .format(...): argparse formats the help again (95%% → 95%)


def add_pruning_commands(subparsers: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """Register ``prune`` and ``sweep``."""
    from core.augment import BN_AUGMENTS
    from core.pruning import METHODS, SCHEDULES

    def pruning_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--samples", type=_positive_int, default=1000, metavar="N",
                       help="per-sample gradient rows n (default 1000)")
        p.add_argument("--images-per-row", dest="per_row", type=_positive_int, default=1,
                       metavar="B", help="average B calibration images into each gradient row "
                       "(mini-batch rows: the Fisher from n·B images at the cost of n rows; "
                       "default 1, lowered to what the calibration set holds)")
        p.add_argument("--scope", choices=("global", "layer"), default="global",
                       help="one budget over all layers (global) or the same sparsity per layer")
        p.add_argument("--lambda", dest="lam", type=float, metavar="λ",
                       help="ridge λ (default: chosen on held-out calibration loss)")
        p.add_argument("--stages", type=_positive_int, default=0,
                       help="CHITA++ stages (default: one per prunable layer, 10 to 20)")
        p.add_argument("--schedule", choices=SCHEDULES, default="log",
                       help="CHITA++ schedule: each stage removes a share of the kept weights "
                       "that shrinks toward the target (log, the default), or the earlier "
                       "s·(1 − (1 − t/T)³) (cubic)")
        bn = p.add_mutually_exclusive_group()
        bn.add_argument("--recalibrate-bn", dest="recal", action="store_true", default=None,
                        help="recompute BatchNorm statistics after pruning (default: on for BatchNorm models)")
        bn.add_argument("--no-recalibrate-bn", dest="recal", action="store_false")
        p.add_argument("--bn-augment", choices=BN_AUGMENTS, default="auto",
                       help="images BatchNorm statistics are recomputed on: as they are (none), "
                       "cropped from a black-padded copy and mirrored as CIFAR training does "
                       "(crop_flip), or whichever gives the dense model the lower held-out "
                       "calibration loss (auto, the default)")
        p.add_argument("--recalibrate-between-stages", dest="between", action="store_true",
                       help="CHITA++: recalibrate BatchNorm after every stage, not only after the "
                       "last (measured worse on ResNet20 at 0.9)")
        p.add_argument("--refine", dest="refine", type=int, default=0, metavar="STEPS",
                       help="after pruning, refine the kept weights with up to STEPS damped "
                       "Gauss-Newton steps on the calibration data, each kept only if held-out "
                       "calibration loss falls (default 0: off)")
        p.add_argument("--update-scale", dest="update_scale", type=_update_scale, default=1.0,
                       metavar="auto|α", help="CHITA, WoodFisher and each CHITA++ stage: move "
                       "the kept weights by α times the method's update (default 1: the whole "
                       "update, as the papers take it); auto chooses α on held-out calibration "
                       "error where BatchNorm is not recalibrated after it")
        p.add_argument("--layers", metavar="NAMES", help="comma-separated weight names to prune "
                       "(default: every Conv/Linear weight; literature preset for mlpnet/resnet20)")
        p.add_argument("--keep-first", dest="keep_first", action="store_true",
                       help="leave the first of the pruned layers (model order) dense")
        p.add_argument("--keep-last", dest="keep_last", action="store_true",
                       help="leave the last of the pruned layers (model order) dense, e.g. the classifier")
        p.add_argument("--pattern", default="", metavar="N:M",
                       help="semi-structured sparsity: keep at most N of every M consecutive weights "
                       "along each layer's inputs, e.g. 2:4 for sparse tensor cores; it fixes the "
                       "sparsity at 1 − N/M (the default then); layers whose input count is not a "
                       "multiple of M stay dense")

    p = subparsers.add_parser("prune", parents=common, help="prune one model at one sparsity")
    add_model_arguments(p)
    add_data_arguments(p, calibration=True)
    p.add_argument("--method", choices=METHODS, default="chita", help="pruning method (default chita)")
    p.add_argument("--sparsity", type=float, help="fraction of weights removed, e.g. 0.9 (with "
                   "--pattern: the pattern's own, 1 − N/M, which is the default then)")
    pruning_options(p)
    p.add_argument("--out", metavar="FILE.onnx", help="export the pruned model (atomic, verified)")
    p.add_argument("--sparse-storage", dest="sparse_storage", action="store_true",
                   help="with --out: " + "store weights that are mostly zeros as ONNX sparse initializers: a smaller file "
                   "with the same values, which onnxruntime reads (other runtimes may not)")
    p.add_argument("--float16", action="store_true", help="with --out: " + FLOAT16_HELP)
    add_latency_arguments(p, "with --out: the written file beside the dense model's")
    p.add_argument("--versus-magnitude", dest="versus_magnitude", action="store_true",
                   help="also prune by magnitude at the same sparsity and settings, and give the change "
                   "against it on the same images (paired 95%% interval; in --json and --report too)")
    p.add_argument("--report", metavar="FILE.md",
                   help="write the run up in Markdown (settings, accuracy with intervals, classes, layers, "
                   "solver, the exported file), to ship beside the pruned model")
    p.add_argument("--per-class", dest="per_class", action="store_true",
                   help=PER_CLASS_HELP.format(", and its change against the dense model on the same images, "
                   "called clear when it excludes 0 after allowing for the number of classes"))
    p.add_argument("--lost-images", dest="lost_images", metavar="FILE.png",
                   help="draw the test images the dense model gets right and the pruned one wrong, by class, "
                   "each with what it now predicts (a PNG contact sheet, the first 200)")
    p.add_argument("--save-weights", dest="save_weights", metavar="FILE.safetensors|FILE.pt",
                   help="also save the pruned network's state_dict (pruned weights are exact zeros) for "
                   "fine-tuning: .safetensors or .pt, written atomically and read back")
    p.set_defaults(func=cmd_prune)

    p = subparsers.add_parser("sweep", parents=common, help="accuracy against sparsity for several methods")
    add_model_arguments(p)
    add_data_arguments(p, calibration=True)
    p.add_argument("--methods", default="magnitude,chita", help="comma-separated methods")
    p.add_argument("--sparsities", type=_float_list, default=None,
                   help="comma-separated sparsities (default 0.5,0.7,0.8,0.9; with --pattern, the "
                   "pattern's own)")
    pruning_options(p)
    p.add_argument("--csv", metavar="FILE.csv", help="write the table as CSV")
    p.add_argument("--class-csv", dest="class_csv", metavar="FILE.csv",
                   help="write each point's accuracy per class as CSV (one line per point and class, with its "
                   "interval and its paired change against dense): which classes go first as sparsity rises")
    p.add_argument("--plot", metavar="FILE.png|svg", help="write the plot (PNG or SVG)")
    p.add_argument("--export-dir", dest="export_dir", metavar="DIR",
                   help="export every point's pruned model to DIR as MODEL_METHOD_SPARSITY.onnx "
                   "as soon as it is done (atomic, verified in onnxruntime)")
    p.add_argument("--sparse-storage", dest="sparse_storage", action="store_true",
                   help="with --export-dir: " + "store weights that are mostly zeros as ONNX sparse initializers: a smaller file "
                   "with the same values, which onnxruntime reads (other runtimes may not)")
    p.add_argument("--float16", action="store_true", help="with --export-dir: " + FLOAT16_HELP)
    p.set_defaults(func=cmd_sweep)


def _request_from_args(args: argparse.Namespace, method: str, sparsity: float | None):
    from core.pruning import PruneRequest, validate_request
    from core.sparsity_pattern import parse_pattern

    pattern = parse_pattern(getattr(args, "pattern", ""))
    if sparsity is None:
        if pattern is None:
            raise StudioError("the sparsity is missing", field="--sparsity",
                              fix="add e.g. --sparsity 0.9, or --pattern 2:4 for 2-of-4 sparsity.")
        sparsity = pattern.sparsity

    layers = tuple(n.strip() for n in args.layers.split(",") if n.strip()) if args.layers else None
    request = PruneRequest(method=method, sparsity=sparsity, scope=args.scope, layers=layers,
                           samples=args.samples, seed=args.seed, lam=args.lam,
                           recalibrate_bn=args.recal, stages=args.stages,
                           recalibrate_between_stages=args.between, refine_steps=args.refine,
                           images_per_row=args.per_row, bn_augment=args.bn_augment,
                           schedule=args.schedule, update_scale=args.update_scale,
                           keep_first=args.keep_first, keep_last=args.keep_last,
                           pattern=str(pattern) if pattern is not None else "")
    validate_request(request)  # before the model and the data are loaded, not after
    return request


def _check_output_file(path: str | None, option: str, suffixes: tuple[str, ...] = ()) -> None:
    """A file an option names (``--out``, ``--csv``, ``--plot``) must be writable before any work
    starts: a sweep of minutes is not lost to a missing folder or a wrong suffix at its end."""
    from core.export import check_destination

    if not path:
        return
    target = os.path.abspath(path)
    if suffixes and not os.path.isdir(target) and Path(target).suffix.lower() not in suffixes:
        raise StudioError(f"{option} writes {' or '.join(s[1:].upper() for s in suffixes)} files, not "
                          f"{Path(target).suffix or 'a file without extension'}", path=target, field=option,
                          fix=f"end the file name with {' or '.join(suffixes)}.")
    what, example = _OUTPUT_FILES.get(option, (f"{option}'s file", "result"))
    check_destination(target, what=what, example=example, field=option)


_OUTPUT_FILES = {"--out": ("the ONNX file", "model.onnx"), "--csv": ("the CSV file", "sweep.csv"),
                 "--plot": ("the plot", "sweep.png"), "--save-weights": ("the weights file", "pruned.safetensors"),
                 "--report": ("the report", "report.md"), "--lost-images": ("the contact sheet", "lost.png"),
                 "--class-csv": ("the CSV file", "classes.csv")}
"""What each file option writes, and an example name, for the messages of :func:`_check_output_file`."""


def _pattern_lines(pattern: Mapping[str, Any] | None) -> list[str]:
    """The prune report's line on an N:M pattern run (none for unstructured runs)."""
    if not pattern:
        return []
    dense = list(pattern.get("dense_layers") or [])
    return [f"Pattern:    {pattern['pattern']} in all {int(pattern['blocks']):,} blocks"
            + (f"; {', '.join(dense)} left dense (input count not a multiple of "
               f"{str(pattern['pattern']).split(':')[1]})" if dense else "")]


def rows_of(result, per_row: int) -> str:
    """'13,000 calibration images (1,000 rows of 13)' for a result's gradient rows."""
    rows = int(result.info.get("samples", result.request.samples))
    return (f"{rows * per_row:,} calibration images ({rows:,} rows of {per_row})" if per_row > 1
            else f"{rows:,} calibration images (one per row)")


def _statistics_recomputed(info: Mapping[str, object]) -> bool | None:
    """Whether the result carries BatchNorm statistics recomputed after pruning: False where
    recalibration was on and declined (it raised the held-out loss), None without BatchNorm."""
    if not info.get("has_batchnorm"):
        return None
    decision = info.get("recalibration")
    declined = isinstance(decision, Mapping) and decision.get("applied") is False
    return bool(info.get("recalibrated")) and not declined


def cmd_prune(args: argparse.Namespace) -> int:
    """``prune MODEL --data DATA --method M --sparsity S``: prune, evaluate, optionally export."""
    from core.batchnorm import describe_batchnorm
    from core.class_accuracy import (
        class_rows,
        class_scores,
        class_table,
        describe_classes,
    )
    from core.evaluate import evaluate, paired_difference
    from core.export import describe_onnx_accuracy, export_onnx, human_bytes
    from core.gradient_cache import GradientCache
    from core.pruning import (
        apply_result,
        describe_samples,
        describe_update_scale,
        prune,
        stages_hint,
    )

    request = _request_from_args(args, args.method, args.sparsity)
    for flag, on in (("--sparse-storage", args.sparse_storage), ("--float16", args.float16),
                     ("--latency", args.latency)):
        if on and not args.out:
            raise StudioError(f"{flag} only applies to the file --out writes", field=flag,
                              fix=f"add --out FILE.onnx, or leave {flag} out.")
    from core.weights_export import SUFFIXES as WEIGHT_SUFFIXES
    from core.weights_export import pruned_metadata, save_weights

    _check_output_file(args.out, "--out")
    _check_output_file(args.save_weights, "--save-weights", WEIGHT_SUFFIXES)
    _check_output_file(args.report, "--report", (".md",))
    _check_output_file(args.lost_images, "--lost-images", (".png",))
    with _progress_for(args) as progress, interruptible() as cancel:
        loaded = model_from_args(args, progress, cancel)
        bundle = bundle_from_args(args, loaded)
        before = evaluate(loaded.model, bundle.evaluation, progress=progress, cancel=cancel)
        cache = GradientCache()  # the BatchNorm check, shared with the magnitude baseline
        result = prune(loaded.model, bundle.calibration, request, arch=loaded.arch,
                       progress=progress, cancel=cancel, cache=cache)
        pruned = apply_result(loaded.model, result)
        after = evaluate(pruned, bundle.evaluation, progress=progress, cancel=cancel)
        mag_eval = None
        if args.versus_magnitude and request.method != "magnitude":
            mag = prune(loaded.model, bundle.calibration, dataclasses.replace(request, method="magnitude"),
                        arch=loaded.arch, progress=progress, cancel=cancel, cache=cache)
            mag_eval = evaluate(apply_result(loaded.model, mag), bundle.evaluation, progress=progress, cancel=cancel)
        export, export_error = None, None
        if args.out:
            batch = bundle.evaluation.x[:VERIFY_IMAGES]
            try:
                export = export_onnx(pruned, batch[:2], args.out, verify_batch=batch,
                                     sparse=args.sparse_storage, float16=args.float16,
                                     evaluation=bundle.evaluation, reference=after,
                                     progress=progress, cancel=cancel)
            except StudioError as exc:  # the run's results are still printed, then this error
                export_error = exc
        latency = None
        if export is not None and args.latency:
            from core.export import onnx_model_bytes
            from core.latency import measure_latency

            dense_file = onnx_model_bytes(loaded.model, batch[:2])
            latency = measure_latency([export.path, dense_file], _latency_images(batch, args.latency_batch),
                                      progress=progress, cancel=cancel)
        weights, weights_error = None, None
        if args.save_weights:
            try:
                weights = save_weights(pruned, args.save_weights,
                                       metadata=pruned_metadata(loaded.source, loaded.arch, result))
            except StudioError as exc:  # as for the export: the results first, then this error
                weights_error = exc
    final = (result.info.get("final") or [{}])[-1]
    change = paired_difference(after, before)
    classes = class_scores(after, bundle.evaluation.y, reference=before, names=bundle.evaluation.class_names)
    data = {
        "model": loaded.source,
        "method": args.method,
        "sparsity": result.sparsity,
        "requested_sparsity": request.sparsity,
        "nonzeros": result.nonzeros,
        "prunable_weights": result.total,
        "accuracy": after.accuracy,
        "accuracy_ci": list(after.accuracy_ci),
        "loss": after.loss,
        "dense_accuracy": before.accuracy,
        "dense_accuracy_ci": list(before.accuracy_ci),
        "accuracy_change": change.difference,
        "accuracy_change_ci": list(change.ci),
        "images_gained": change.a_only,
        "images_lost": change.b_only,
        "classes_clearly_lower": [c.name for c in classes if c.clear and c.change.difference < 0],
        "n_eval": after.n,
        "lambda": result.lam,
        "objective": final.get("objective"),
        "magnitude_objective": final.get("magnitude_objective"),
        "objective_lower_bound": final.get("objective_lower_bound"),
        "iterations": final.get("iterations"),
        "converged": final.get("converged"),
        "recalibrated_bn": _statistics_recomputed(result.info),
        "recalibrate_bn": result.info.get("recalibrated"),
        "batchnorm": describe_batchnorm(result.info) or None,
        "batchnorm_recalibration": result.info.get("recalibration"),
        "batchnorm_images": result.info.get("bn_augment"),
        "stages": len(result.info["schedule"]) if "schedule" in result.info else None,
        "schedule": ({"shape": result.info.get("schedule_shape"),
                      "sparsities": list(result.info["schedule"])}
                     if "schedule" in result.info else None),
        "update_scale": result.info.get("update_scale"),
        "refinement": list(result.info.get("refinement", [])),
        "samples": result.info.get("samples"),
        "samples_asked": result.request.samples,
        "images_per_row": result.info.get("images_per_row", 1),
        "refine_images_per_row": result.info.get("refine_images_per_row"),
        "timings": dict(result.timings),
        "layer_sparsity": dict(result.layer_sparsity),
        "kept_dense": list(result.info.get("kept_dense", [])),
        "pattern": result.info.get("pattern"),
    }
    if export is not None:
        data["export"] = export_fields(export)
    hint = ""
    if mag_eval is not None:
        vs = paired_difference(after, mag_eval)
        data.update({"magnitude_accuracy": mag_eval.accuracy, "magnitude_accuracy_ci": list(mag_eval.accuracy_ci),
                     "vs_magnitude": vs.difference, "vs_magnitude_ci": list(vs.ci)})
        hint = stages_hint(request.method, change, vs)
        if hint:
            data["hint"] = hint

    def pct(e) -> str:
        return f"{100 * e.accuracy:.2f}% (95% interval {100 * e.accuracy_ci[0]:.2f}–{100 * e.accuracy_ci[1]:.2f}%)"

    lines = [
        f"Model:      {loaded.source}",
        f"Method:     {args.method} at {100 * result.sparsity:.2f}% sparsity "
        f"({result.nonzeros:,} of {result.total:,} prunable weights kept"
        + (f"; {', '.join(result.info['kept_dense'])} left dense" if result.info.get("kept_dense") else "") + ")",
        *_pattern_lines(result.info.get("pattern")),
        f"Accuracy:   {pct(after)} on {after.n:,} images; dense {pct(before)}",
        f"Change:     {change.describe('dense')}",
        *([f"Versus:     {paired_difference(after, mag_eval).describe('magnitude at the same sparsity')}; "
           f"magnitude {pct(mag_eval)}"] if mag_eval is not None else []),
        *([f"Hint:       {hint} (--method chita++)"] if hint else []),
        f"Classes:    {describe_classes(classes)}" + ("" if args.per_class else " (--per-class for the table)"),
        f"Loss:       {after.loss:.4f} (dense {before.loss:.4f})",
    ]
    if args.per_class:
        data["per_class"] = class_rows(classes)
        lines.append(f"Per class ({len(classes)} classes; change against dense on the class's images, "
                     "paired 95% interval; clear: excludes 0 after allowing for all the classes):\n"
                     + class_table(classes, args.method, "dense"))
    if args.lost_images:
        data["lost_images"], line = write_lost_images(args.lost_images, after, before, bundle.evaluation,
                                                      normalization=bundle.normalization)
        lines.append(line)
    if "images_per_row" in result.info:
        b, rows = int(result.info["images_per_row"]), int(result.info["samples"])
        asked = int(result.info["images_per_row_asked"])
        lines.append(f"Gradients:  {rows:,} rows of {b} images each ({rows * b:,} calibration "
                     "images)" + (f"; {asked} per row asked, more than the calibration set "
                                  "holds beside the held-out images" if asked > b else ""))
    fewer = describe_samples(result.info)
    if fewer:
        lines.append(f"Gradients:  {fewer} (give more calibration images for more rows)")
    if result.info.get("obd_streamed"):
        lines.append(f"Gradients:  the Fisher's diagonal summed a block of images at a time "
                     f"({int(result.info['samples']):,} images; their whole G would not fit in memory)")
    if result.lam is not None:
        lines.append(f"λ:          {result.lam:.3g}")
    if data["batchnorm"]:
        lines.append(f"BatchNorm:  {data['batchnorm'].removeprefix('BatchNorm: ')}")
    if final.get("objective") is not None:
        floor = final.get("objective_lower_bound")
        lines.append(f"Objective:  {final['objective']:.6g} (backsolve on the magnitude mask "
                     f"{final['magnitude_objective']:.6g}"
                     + (f"; no mask {f'with this {request.pattern} pattern' if request.pattern else 'of this size'} "
                        f"goes below {floor:.6g}" if floor is not None else "")
                     + f"); {final['iterations']} swap steps, "
                     f"{'converged' if final['converged'] else 'not converged'}")
    update = describe_update_scale(result.info)
    if update:
        lines.append(f"Update:     {update}")
    steps = result.info.get("refinement") or []
    if steps:
        taken = [st for st in steps if st["accepted"]]
        rb = int(result.info.get("refine_images_per_row", 1))
        lines.append(f"Refinement: {len(taken)} of {len(steps)} steps taken; held-out calibration "
                     f"loss {steps[0]['holdout_loss_before']:.4f} → {steps[-1]['holdout_loss_after']:.4f}; "
                     f"gradients from {rows_of(result, rb)}")
    lines.append("Time:       " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    if export is not None:
        lines.append(f"Exported:   {export.path}: {export.onnx_bytes:,} bytes, "
                     f"{human_bytes(export.compressed_bytes)} compressed; max |Δ| {export.max_abs_diff:.2g}"
                     + ("; sparse storage" if export.sparse else "")
                     + ("; float16 weights" if export.float16_tensors else "")
                     + (f"; {next(iter(export.patterns))} in every block, read back from the file"
                        if export.patterns else ""))
        lines.append(f"Graph:      {export.interface}, opset {export.opset}")
        lines.append(f"In ONNX:    {describe_onnx_accuracy(export)}")
    if latency is not None:
        pruned_lat, dense_lat = latency
        data["latency"] = latency_fields(pruned_lat, dense_lat)
        lines.append(f"Latency:    {pruned_lat.describe()} in onnxruntime on this CPU; the dense model "
                     f"{dense_lat.median_ms:.3g} ms in the same rounds: "
                     f"{pruned_lat.median_ms / dense_lat.median_ms:.2f}× its time")
    if export_error is not None:
        data["export_error"] = str(export_error)
        lines.append(f"Exported:   nothing: {export_error}")
    if weights is not None:
        data["weights_file"] = {"path": weights.path, "bytes": weights.bytes, "format": weights.format,
                                "tensors": weights.tensors}
        lines.append(f"Weights:    {weights.path}: {weights.bytes:,} bytes, the whole state_dict "
                     f"({weights.format}; read back bit for bit)"
                     + (f"; opens with --arch {loaded.arch}" if loaded.arch else ""))
    if weights_error is not None:
        data["weights_error"] = str(weights_error)
        lines.append(f"Weights:    nothing saved: {weights_error}")
    if args.report:
        from core.report import run_report, write_report

        sheet = (Path(os.path.relpath(os.path.abspath(args.lost_images),
                                      os.path.dirname(os.path.abspath(args.report)))).as_posix()
                 if args.lost_images else None)
        data["report"] = write_report(run_report(result, model=loaded.source, data=args.data, dense=before,
                                                 pruned=after, images=bundle.evaluation, magnitude=mag_eval,
                                                 export=export, latency=latency, command=args.command_line,
                                                 lost_images=sheet),
                                      args.report)
        lines.append(f"Report:     {data['report']}")
    emit(args, data, "\n".join(lines))
    for what, err in (("the export", export_error), ("saving the weights", weights_error)):
        if err is not None:
            _error(f"{what} failed: {err}")
    return EXIT_ERROR if export_error is not None or weights_error is not None else EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sweep MODEL --data DATA --methods a,b --sparsities ...``: accuracy against sparsity."""
    from core.pruning import METHODS
    from core.sparsity_pattern import parse_pattern
    from core.sweep import export_points, run_sweep

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise StudioError(f"unknown method(s): {', '.join(bad)}", field="--methods",
                          fix=f"choose from: {', '.join(METHODS)}.")
    if args.sparsities is None:  # the default: the pattern's sparsity, or four of them
        pattern = parse_pattern(args.pattern)
        args.sparsities = [pattern.sparsity] if pattern is not None else list(DEFAULT_SWEEP_SPARSITIES)
    for s in args.sparsities:
        _request_from_args(args, methods[0], s)
    _check_output_file(args.csv, "--csv")
    _check_output_file(args.class_csv, "--class-csv", (".csv",))
    _check_output_file(args.plot, "--plot", (".png", ".svg"))
    if args.export_dir:
        _check_export_dir(args.export_dir)
    else:
        for flag, on in (("--sparse-storage", args.sparse_storage), ("--float16", args.float16)):
            if on:
                raise StudioError(f"{flag} only applies to the files --export-dir writes",
                                  field=flag, fix=f"add --export-dir DIR, or leave {flag} out.")
    partial: list = []  # the sweep so far (its last partial result): kept when it is cancelled
    exports: dict[tuple[str, float], Any] = {}  # (method, sparsity) → ExportReport, or None: not kept
    failed: list[StudioError] = []  # an export that failed: the sweep goes on, no more exports

    def keep(so_far: Any) -> None:
        partial[:] = [so_far]
        if args.export_dir and not failed:  # the points not exported yet (over EXPORT_KEEP_BYTES: None)
            batch = bundle.evaluation.x[:VERIFY_IMAGES]
            try:
                export_points(loaded.model, so_far.rows, args.export_dir, stem=loaded.source,
                              sample=batch[:2], verify_batch=batch, done=exports,
                              sparse=args.sparse_storage, float16=args.float16,
                              evaluation=bundle.evaluation, cancel=cancel)
            except StudioError as exc:
                failed.append(exc)

    with _progress_for(args) as progress, interruptible() as cancel:
        loaded = model_from_args(args, progress, cancel)
        bundle = bundle_from_args(args, loaded)
        try:
            first = _request_from_args(args, methods[0], args.sparsities[0])
            res = run_sweep(loaded.model, bundle, methods, list(args.sparsities),
                            layers=first.layers, keep_first=first.keep_first, keep_last=first.keep_last,
                            samples=args.samples, seed=args.seed, arch=loaded.arch,
                            recalibrate_bn=args.recal, scope=args.scope, lam=args.lam,
                            stages=args.stages, recalibrate_between_stages=args.between,
                            refine_steps=args.refine, images_per_row=args.per_row,
                            bn_augment=args.bn_augment, schedule=args.schedule,
                            update_scale=args.update_scale, pattern=first.pattern,
                            progress=progress, cancel=cancel,
                            on_partial=keep, keep_results=EXPORT_KEEP_BYTES if args.export_dir else 0)
        except Cancelled:
            if not partial:
                raise
            res = partial[-1]
    _sweep_output(args, loaded, res, exports, failed[0] if failed else None, bundle.evaluation)
    if failed:  # the table is out (and in --csv, --plot); the failed export sets the status
        _error(f"exporting the sweep's points failed: {failed[0]}")
        return EXIT_ERROR
    if res.meta.get("partial"):  # cancelled: the finished points are out, then status 130
        files = " and ".join(str(f) for f in (args.csv, args.class_csv, args.plot, args.export_dir) if f)
        _error(f"cancelled after {len(res.rows)} of {res.meta['points']} points; the finished "
               f"ones are in the output above{f' and in {files}' if files else ''}")
        return EXIT_CANCELLED
    return EXIT_OK


EXPORT_KEEP_BYTES = 4 * 1024**3  # sweep --export-dir: pruned weights kept for export, at most
DEFAULT_SWEEP_SPARSITIES = (0.5, 0.7, 0.8, 0.9)  # sweep without --sparsities or --pattern


def _check_export_dir(folder: str) -> None:
    """--export-dir must be a writable folder (made if missing) before the sweep starts."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create the export folder {folder}: {exc.strerror or exc}",
                          field="--export-dir", fix="give a folder you can write to.") from exc
    if not path.is_dir() or not os.access(path, os.W_OK):
        raise StudioError(f"{folder} is not a folder you can write to", field="--export-dir",
                          fix="give a folder you can write to.")


def _sweep_output(args: argparse.Namespace, loaded: Any, res: Any,
                  exports: dict[tuple[str, float], Any] | None = None,
                  export_error: StudioError | None = None, images: Any = None) -> None:
    """Write the sweep's CSV and plot where asked, and print its table (or JSON); ``images``,
    the evaluation images, give each point's worst class."""
    from core.class_accuracy import class_changes, most_changed

    changes = [res.change(r) for r in res.rows]
    versus = [res.versus(r) for r in res.rows]  # against magnitude at the same sparsity
    has_versus = any(m is not None for m in versus)
    rows = [{"method": r.method, "sparsity": r.sparsity, "accuracy": r.eval.accuracy,
             "accuracy_ci": list(r.eval.accuracy_ci), "loss": r.eval.loss, "nonzeros": r.nonzeros,
             "lambda": r.lam, "seconds": r.seconds, "accuracy_change": d.difference,
             "accuracy_change_ci": list(d.ci),
             "vs_magnitude": None if m is None else m.difference,
             "vs_magnitude_ci": None if m is None else list(m.ci),
             "worst_class": _worst_class_field(most_changed(class_changes(r.eval, res.dense, images), 1))}
            for r, d, m in zip(res.rows, changes, versus)]
    exports = exports or {}
    if getattr(args, "export_dir", None):
        for row, r in zip(rows, res.rows):
            e = exports.get((r.method, r.sparsity))
            row["export"] = None if e is None else export_fields(e)
    data = {"model": loaded.source, "dense_accuracy": res.dense.accuracy,
            "dense_accuracy_ci": list(res.dense.accuracy_ci), "n_eval": res.dense.n,
            "rows": rows, "seconds": res.seconds, "samples": res.meta["samples_used"],
            "samples_asked": res.meta["samples"], "kept_dense": list(res.meta.get("kept_dense", [])),
            "pattern": res.meta.get("pattern") or None, "pattern_dense": list(res.meta.get("pattern_dense", []))}
    lines = [f"Model: {loaded.source}; dense {100 * res.dense.accuracy:.2f}% on {res.dense.n:,} images",
             f"{'method':<16}{'sparsity':>9}{'accuracy':>10}{'95% interval':>18}"
             f"{'vs dense, points [95%]':>28}" + (f"{'vs magnitude [95%]':>28}" if has_versus else "")
             + f"{'seconds':>9}"]

    def points(d: Any) -> str:
        return "–" if d is None else f"{100 * d.difference:+.2f} [{100 * d.ci[0]:+.2f}, {100 * d.ci[1]:+.2f}]"

    for r, d, m in zip(res.rows, changes, versus):
        lo, hi = r.eval.accuracy_ci
        lines.append(f"{r.method:<16}{r.sparsity:>9.3f}{100 * r.eval.accuracy:>9.2f}%"
                     f"{100 * lo:>9.2f}–{100 * hi:.2f}%{points(d):>28}"
                     + (f"{points(m):>28}" if has_versus else "") + f"{r.seconds:>9.1f}")
    lines.append("vs dense: the change in accuracy on the same images, with its paired 95% interval"
                 + ("; vs magnitude: the same against magnitude pruning at that sparsity." if has_versus
                    else "."))
    lines.append("seconds: a method's pruning time for the whole sweep (its points share gradients), "
                 "split evenly over its points; evaluation excluded.")
    if res.meta.get("samples_note"):
        lines.append(f"gradients: {res.meta['samples_note']} (give more calibration images for more rows).")
    if res.meta.get("kept_dense"):
        lines.append(f"left dense: {', '.join(res.meta['kept_dense'])} (--keep-first / --keep-last).")
    if res.meta.get("pattern"):
        lines.append(f"pattern: {res.meta['pattern']} (at most {res.meta['pattern'].replace(':', ' of every ')} "
                     "consecutive weights along each layer's inputs kept, --pattern)"
                     + (f"; {', '.join(res.meta['pattern_dense'])} left dense, no blocks of "
                        f"{res.meta['pattern'].split(':')[1]}" if res.meta.get("pattern_dense") else "") + ".")
    if getattr(args, "export_dir", None):
        written = [e for e in exports.values() if e is not None]
        lines.append(f"exported: {len(written)} of {len(res.rows)} points to {args.export_dir}, each "
                     "verified in onnxruntime" + ("" if not written or not written[0].sparse
                                                   else ", with sparse storage")
                     + ("" if not written or not written[0].float16_tensors else ", with float16 weights")
                     + (f" ({', '.join(Path(e.path).name for e in written)})" if written else "") + ".")
        scored = [e for e in written if e.onnx_eval is not None]
        if scored:
            differ = sum(e.scored_differently for e in scored)
            each = ", ".join(f"{Path(e.path).name} {100 * e.onnx_eval.accuracy:.2f}%" for e in scored)
            lines.append(f"each file scored on the {scored[0].onnx_eval.n:,} evaluation images in onnxruntime: "
                         + ("every accuracy equals its row's" if differ == 0 else
                            f"{differ:,} image scorings differ from PyTorch's in all ({each})") + ".")
        missed = [k for k, e in exports.items() if e is None]
        stopped = [(r.method, r.sparsity) for r in res.rows if (r.method, r.sparsity) not in exports]
        if stopped:
            lines.append(f"not exported: {', '.join(f'{m} at {s:g}' for m, s in stopped)}: "
                         + ("exports stopped at a failed one." if export_error is not None else
                            "cancelled before its export."))
        if missed:
            lines.append(f"not exported: {', '.join(f'{m} at {s:g}' for m, s in missed)}: the sweep keeps at "
                         f"most {EXPORT_KEEP_BYTES / 1024**3:.0f} GiB of pruned weights; export them with "
                         "`chita-studio prune … --out FILE.onnx`.")
    if export_error is not None:
        data["export_error"] = str(export_error)
        lines.append(f"export failed: {export_error}")
    if res.meta.get("partial"):
        data["partial"] = True
        data["points_asked"] = res.meta["points"]
        lines.append(f"cancelled: {len(res.rows)} of {res.meta['points']} points finished; "
                     "seconds are the time so far split over them.")
    emit(args, data, "\n".join(lines))
    _write_sweep_files(args, loaded, res, images)


def _worst_class_field(worst: list) -> dict[str, Any] | None:
    """The class that lost most (a one-item list from most_changed) for ``--json``, or None."""
    if not worst:
        return None
    w = worst[0]
    return {"label": w.label, "name": w.name, "change": w.change.difference, "change_ci": list(w.change.ci),
            "clear": w.clear}


def _write_sweep_files(args: argparse.Namespace, loaded: Any, res: Any, images: Any = None) -> None:
    """--csv and --plot, after the table is out: a file that cannot be written (the disk filled
    during the sweep) is an error that names it, and the results are already printed."""
    from core.sweep import plot_sweep, write_class_csv

    for option, path, write in (
            ("--csv", args.csv, lambda: res.to_csv(args.csv, images)),
            ("--class-csv", args.class_csv, lambda: write_class_csv(res, images, args.class_csv)),
            ("--plot", args.plot, lambda: plot_sweep(res, args.plot,
                                                     title=f"{loaded.source}: accuracy against sparsity"))):
        if not path:
            continue
        try:
            write()
        except OSError as exc:
            raise StudioError(f"could not write {option}'s file ({exc.strerror or exc}); the sweep's "
                              "results are printed above", path=path, field=option,
                              fix="free some space or choose another folder, and run the sweep again.") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``chita-studio`` argument parser."""
    from core import __version__

    parser = _Parser(
        prog=PROG,
        description="One-shot post-training pruning (CHITA) with verified ONNX export. "
        "Without a command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    gui = parser.add_argument_group("desktop app (no command)")
    gui.add_argument("--demo", metavar="NAME", help="open the app with a built-in demo model (digits_mlp, digits_cnn)")
    gui.add_argument("--screenshot", metavar="FILE.png", help="save a screenshot of the app's window and exit")
    gui.add_argument("--open", dest="gui_model", metavar="MODEL",
                     help="open the app on this model file (as File > Open model)")
    gui.add_argument("--arch", dest="gui_arch", metavar="NAME",
                     help="with --open: the architecture of a state_dict (e.g. resnet20, mlpnet)")
    gui.add_argument("--data", dest="gui_data", metavar="DATA",
                     help="open the app with this data: 'digits', a folder or a data file")
    gui.add_argument("--preset", dest="gui_preset", metavar="NAME",
                     help="with --data: the normalisation preset (default: the model's)")

    output = _Parser(add_help=False)
    add_output_arguments(output)
    common = [output]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", parents=common, help="show a model's format, input shape and layers")
    add_model_arguments(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", parents=common, help="accuracy (with 95%% interval) and loss on test images")
    add_model_arguments(p)
    add_data_arguments(p)
    p.add_argument("--batch-size", type=_positive_int, default=256, help="images per batch (default 256)")
    p.add_argument("--per-class", dest="per_class", action="store_true", help=PER_CLASS_HELP.format(""))
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", parents=common,
                       help="two models on the same test images: the paired change, agreement and classes")
    add_model_arguments(p)
    p.add_argument("other", metavar="OTHER", help="the model to compare with MODEL (e.g. a pruned ONNX file "
                   "against its dense original), loaded with the same options")
    add_data_arguments(p)
    p.add_argument("--per-class", dest="per_class", action="store_true",
                   help=PER_CLASS_HELP.format(" against MODEL's on the same images"))
    p.add_argument("--lost-images", dest="lost_images", metavar="FILE.png",
                   help="draw the test images MODEL gets right and OTHER wrong, by class, each with what OTHER "
                   "now predicts (a PNG contact sheet, the first 200)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", parents=common, help="export to ONNX, verified in onnxruntime")
    add_model_arguments(p)
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="where to write the ONNX file")
    p.add_argument("--opset", type=_positive_int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--sparse-storage", dest="sparse_storage", action="store_true", help="store weights that are mostly zeros as ONNX sparse initializers: a smaller file "
                   "with the same values, which onnxruntime reads (other runtimes may not)")
    p.add_argument("--float16", action="store_true", help=FLOAT16_HELP)
    add_latency_arguments(p, "the written file")
    add_data_arguments(p, required=False)
    p.set_defaults(func=cmd_export)

    add_pruning_commands(sub, common)

    p = sub.add_parser("sensitivity", parents=common,
                       help="prune each layer alone by magnitude and score the loss on calibration images")
    add_model_arguments(p)
    add_data_arguments(p, calibration=True)
    p.add_argument("--sparsities", type=_float_list, default=[0.5, 0.9],
                   help="comma-separated sparsities for each layer (default 0.5,0.9)")
    p.add_argument("--images", type=_positive_int, default=SENSITIVITY_IMAGES,
                   help=f"calibration images scored, the last ones of the set (default {SENSITIVITY_IMAGES})")
    p.add_argument("--layers", metavar="NAMES", help="comma-separated weight names (default: those a run "
                   "prunes; the literature preset for mlpnet/resnet20)")
    p.add_argument("--csv", metavar="FILE.csv", help="write one line per layer and sparsity")
    p.set_defaults(func=cmd_sensitivity)
    return parser


GUI_OPTIONS = {"gui_model": "--open", "gui_arch": "--arch", "gui_data": "--data", "gui_preset": "--preset"}


def _gui_options_error(args: argparse.Namespace) -> str | None:
    """Why the desktop app's options cannot be used as given, or None."""
    given = [flag for dest, flag in GUI_OPTIONS.items() if getattr(args, dest, None)]
    if args.command is not None and given:
        return (f"{', '.join(given)} before '{args.command}' open the desktop app; options of "
                f"'{args.command}' go after it, e.g. {PROG} {args.command} MODEL --arch NAME --data DATA.")
    if args.gui_arch and not args.gui_model:
        return "--arch names the architecture of the model given with --open MODEL; add --open."
    if args.gui_preset and not args.gui_data:
        return "--preset is the normalisation of the images given with --data DATA; add --data."
    if args.gui_model and args.demo:
        return "--open and --demo each choose the model to open; give one of them."
    return None


def _run_gui(args: argparse.Namespace) -> int:
    args = argparse.Namespace(**vars(args), model=args.gui_model, arch=args.gui_arch,
                              data=args.gui_data, preset=args.gui_preset)
    try:
        from gui.app import run_app
    except ImportError as err:
        _error(
            f"The desktop app cannot start: {err}. Install the GUI dependencies (pip install -e . "
            f"installs PySide6-Essentials and pyqtgraph), or use the headless commands: {PROG} --help."
        )
        return EXIT_USAGE
    return int(run_app(args) or 0)


def _error(message: str) -> None:
    text = " ".join(str(message).split())  # one paragraph
    sys.stderr.write(f"{PROG}: error: {text}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chita-studio`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.command_line = shlex.join(["chita-studio", *(sys.argv[1:] if argv is None else argv)])
    except _UsageError as err:
        _error(str(err))
        return EXIT_USAGE
    except SystemExit as exit_:  # --help, --version
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    problem = _gui_options_error(args)
    if problem:
        _error(problem)
        return EXIT_USAGE
    if args.command is None:
        return _run_gui(args)

    def fail(code: int, message: str) -> int:
        _error(message)
        if getattr(args, "json", False):
            print(json.dumps({"error": " ".join(message.split()), "exit_code": code}, indent=2))
        return code

    try:
        return args.func(args)
    except StudioError as err:
        return fail(EXIT_USAGE, str(err))
    except (Cancelled, KeyboardInterrupt):
        return fail(EXIT_CANCELLED, "cancelled")
    except BrokenPipeError:  # whoever read stdout stopped (`| head`): stop quietly, as Unix tools do
        try:  # and keep Python's flush at exit from failing on the closed pipe again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except Exception as err:  # noqa: BLE001 - a bug: show it, with its traceback
        traceback.print_exc()
        return fail(
            EXIT_ERROR,
            f"unexpected {type(err).__name__}: {err}. This is a bug; please report it with the traceback above.",
        )


if __name__ == "__main__":
    sys.exit(main())
