"""The chita-studio command, run in-process: output, JSON and exit codes."""

from __future__ import annotations

import ast
import io
import json
import os
import signal
import sys
import types

import pytest
import torch

import core.cli as cli
from core.cli import TextProgress, main
from core.progress import Progress


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys, *argv: str) -> dict:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------------------------------
# info


def test_info_on_the_builtin_demo(capsys):
    data = _json(capsys, "info", "demo")
    assert data["source"] == "demo:digits_mlp" and data["format"] == "demo"
    assert data["input_shape"] == [1, 8, 8] and data["num_classes"] == 10
    prunable = [layer for layer in data["layers"] if layer["prunable"]]
    assert data["prunable_tensors"] == len(prunable) > 0
    assert data["prunable_weights"] == sum(layer["params"] for layer in prunable)
    assert data["total_params"] == sum(layer["params"] for layer in data["layers"])
    assert all(layer["type"] in ("Linear", "Conv2d") for layer in prunable)

    code, out, _ = _run(capsys, "info", "demo:digits_mlp")
    assert code == 0
    assert "digits_mlp" in out and f"{data['prunable_weights']:,} weights" in out


def test_info_on_an_onnx_graph_lists_its_operators(capsys, tmp_path):
    import onnx
    from onnx_files import anonymous

    assert main(["export", "demo:digits_cnn", "--out", str(tmp_path / "d.onnx"), "-q"]) == 0
    anonymous(tmp_path / "d.onnx", tmp_path / "g.onnx")  # weights renamed: the graph itself is run
    proto = onnx.load(str(tmp_path / "g.onnx"))
    capsys.readouterr()
    data = _json(capsys, "info", str(tmp_path / "g.onnx"))
    assert data["format"] == "onnx" and data["arch"] is None and data["num_classes"] == 10
    assert data["onnx_ops"] == {n.op_type: sum(m.op_type == n.op_type for m in proto.graph.node)
                                for n in proto.graph.node}
    assert data["outputs_probabilities"] is False and data["prunable_tensors"] == 3
    code, out, _ = _run(capsys, "info", str(tmp_path / "g.onnx"))
    assert code == 0 and f"ONNX graph:   {len(proto.graph.node)} nodes run with PyTorch (Conv 2" in out
    assert data["gradient_rows"] == "closed_form" and "Gradient rows:    closed form" in out
    assert data["channels_last_file"] is False and "channels last" not in out
    assert data["float16_file"] is False and "float16" not in out
    assert data["onnx_outputs"] == ["output"] and "Outputs:" not in out


def test_a_channels_last_onnx_file_prunes_on_channels_first_data_and_exports_channels_last(capsys, tmp_path):
    """info says the file takes H×W×C; prune on the digits (N×C×H×W) runs, and its --out file takes
    N×8×8×1 and scores in onnxruntime what PyTorch scores."""
    import onnx

    from core.demo import load_demo
    from core.export import export_onnx

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2))

    export_onnx(ChannelsLast(load_demo("digits_cnn").model), torch.randn(2, 8, 8, 1), tmp_path / "nhwc.onnx")
    data = _json(capsys, "info", str(tmp_path / "nhwc.onnx"))
    assert data["channels_last_file"] is True and data["input_shape"] == [1, 8, 8]
    assert data["onnx_outputs"] == ["output"]
    code, out, _ = _run(capsys, "info", str(tmp_path / "nhwc.onnx"))
    assert code == 0 and "Input shape:  1×8×8 (one sample; the file takes it channels last" in out
    data = _json(capsys, "prune", str(tmp_path / "nhwc.onnx"), "--data", "digits", "--method", "magnitude",
                 "--sparsity", "0.5", "--out", str(tmp_path / "out.onnx"), "-q")
    assert data["accuracy"] > 0.8 and data["export"]["onnx_accuracy"] == data["accuracy"]
    assert data["export"]["interface"] == "input `input` batch×8×8×1 → `output`" and data["export"]["opset"] > 11
    dims = onnx.load(str(tmp_path / "out.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [8, 8, 1]


def test_info_says_how_many_samples_fit_in_memory(capsys, monkeypatch):
    """What CHITA may take as --samples on this model, from the same rule the run checks:
    G (samples × prunable weights, float32, ×1.5 workspace) in half the available RAM."""
    import core.errors
    import core.fisher

    p = _json(capsys, "info", "demo")["prunable_weights"]
    monkeypatch.setattr(core.fisher, "available_memory_bytes", lambda: int(2 * 64.5 * p * 4 * 1.5))
    data = _json(capsys, "info", "demo")
    assert data["samples_that_fit"] == 64
    code, out, _ = _run(capsys, "info", "demo")
    assert code == 0 and "Samples that fit: 64 gradient rows" in out
    with pytest.raises(core.errors.StudioError, match="use at most 64 samples"):
        core.fisher.check_memory(65, p)  # the run refuses one more, with the same number
    core.fisher.check_memory(64, p)


@pytest.mark.shared
def test_info_on_resnet20(capsys, shared_dir, monkeypatch):
    import core.fisher

    monkeypatch.setattr(core.fisher, "available_memory_bytes", lambda: 2 * 6_000_000_000)
    model = str(shared_dir / "models" / "resnet20_cifar10.pt")
    data = _json(capsys, "info", model, "--arch", "resnet20")
    assert (data["prunable_tensors"], data["prunable_weights"]) == (22, 270_896)
    # samples that fit: for the 268,336 weights a run prunes (the downsample convs stay dense)
    assert data["samples_that_fit"] == int(6_000_000_000 / (268_336 * 4 * 1.5)) == 3726
    assert data["format"] == "state_dict" and data["arch"] == "resnet20"
    assert data["input_shape"] == [3, 32, 32]
    assert {layer["name"] for layer in data["layers"] if layer["prunable"]} >= {"conv1.weight", "fc.weight"}

    code, out, _ = _run(capsys, "info", model, "--arch", "resnet20")
    assert code == 0
    assert "22 tensors, 270,896 weights" in out
    assert "layer3.2.conv2.weight" in out and "Conv2d" in out


# --------------------------------------------------------------------------------------------
# eval


@pytest.mark.shared
def test_eval_mlpnet_on_mnist(capsys, shared_dir):
    argv = ["eval", str(shared_dir / "models" / "mlpnet_mnist.pt"), "--arch", "mlpnet",
            "--data", str(shared_dir / "data" / "mnist")]
    data = _json(capsys, *argv)
    assert data["n"] == 10_000 and data["correct"] == 9_397
    assert round(data["accuracy_percent"], 2) == 93.97
    lo, hi = data["accuracy_ci"]
    assert lo < 0.9397 < hi and hi - lo < 0.01
    assert data["loss_ci"][0] < data["loss"] < data["loss_ci"][1]

    code, out, _ = _run(capsys, *argv, "--max-eval", "500", "--batch-size", "128")
    assert code == 0
    assert "of 500 images" in out and "95% interval" in out


@pytest.mark.shared
def test_eval_with_mismatched_data_is_a_clear_error(capsys, shared_dir):
    code, out, err = _run(capsys, "eval", str(shared_dir / "models" / "resnet20_cifar10.pt"), "--arch", "resnet20",
                          "--data", str(shared_dir / "data" / "mnist"), "--max-eval", "10")
    assert code == 2
    assert "Traceback" not in err and err.count("\n") == 1
    assert "28" in err and "32" in err


@pytest.mark.shared
def test_ctrl_c_cancels_evaluation(capsys, shared_dir, monkeypatch):
    real_call = TextProgress.__call__

    def interrupt_after_first_batch(self, p: Progress) -> None:
        real_call(self, p)
        if p.stage == "evaluate" and 0 < p.done < p.total:
            os.kill(os.getpid(), signal.SIGINT)  # handled by cli.interruptible(): sets the token

    monkeypatch.setattr(TextProgress, "__call__", interrupt_after_first_batch)
    before = signal.getsignal(signal.SIGINT)
    code, out, err = _run(capsys, "eval", str(shared_dir / "models" / "mlpnet_mnist.pt"), "--arch", "mlpnet",
                          "--data", str(shared_dir / "data" / "mnist"), "--batch-size", "100")
    assert code == 130
    assert "cancelled" in err and "Traceback" not in err
    assert out == ""
    assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------------------------
# export


@pytest.mark.shared
def test_export_resnet20(capsys, shared_dir, tmp_path):
    out_file = tmp_path / "resnet20.onnx"
    data = _json(capsys, "export", str(shared_dir / "models" / "resnet20_cifar10.pt"), "--arch", "resnet20",
                 "--out", str(out_file), "--data", str(shared_dir / "data" / "cifar10"))
    assert data["verified"] is True
    assert data["max_abs_diff"] < 1e-4
    assert data["path"] == str(out_file) and out_file.stat().st_size == data["onnx_bytes"]
    assert 0 < data["compressed_bytes"] <= data["onnx_bytes"]
    assert len(data["zero_fractions"]) == 22
    assert data["verify_batch_size"] == cli.VERIFY_IMAGES
    assert os.listdir(tmp_path) == ["resnet20.onnx"]
    assert data["storage"] == "dense" and data["sparse_tensors"] == 0
    # --data: the file is also scored on the evaluation images in onnxruntime, beside PyTorch
    assert data["onnx_accuracy"] == data["pytorch_accuracy"] and data["scored_differently"] == 0
    assert 0.85 < data["onnx_accuracy"] < 0.95  # the dense ResNet20 on the 846 shared CIFAR-10 images


def test_export_demo_with_random_inputs(capsys, tmp_path):
    out_file = tmp_path / "digits.onnx"
    code, out, err = _run(capsys, "export", "demo", "--out", str(out_file))
    assert code == 0, err
    assert out_file.exists()
    assert "random inputs of shape 1×8×8" in out and "keep their zeros" in out
    assert "Storage:   dense" in out and "Accuracy:" not in out  # random inputs: nothing to score
    code, out, err = _run(capsys, "export", "demo", "--out", str(tmp_path / "d.onnx"), "--sparse-storage")
    assert code == 0, err  # the dense demo has no tensor that sparse storage would shrink: it says so
    assert "sparse storage was asked for, but no weight tensor" in out
    assert (tmp_path / "d.onnx").read_bytes() == out_file.read_bytes()

    code, out, err = _run(capsys, "export", "demo", "--out", str(tmp_path / "missing" / "x.onnx"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# errors


def test_bad_model_file_is_one_paragraph_without_traceback(capsys, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"this is not a model at all")
    code, out, err = _run(capsys, "info", str(bad))
    assert code == 2
    assert out == ""
    assert "Traceback" not in err and err.count("\n") == 1
    assert str(bad) in err

    code, out, err = _run(capsys, "info", str(bad), "--json")
    assert code == 2 and "Traceback" not in err
    assert json.loads(out)["exit_code"] == 2


def test_pickled_model_needs_consent(capsys, tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)
    code, out, err = _run(capsys, "info", str(path))
    assert code == 2
    assert "--trust-pickle" in err and "Traceback" not in err

    data = _json(capsys, "info", str(path), "--trust-pickle")
    assert data["format"] == "pickle" and data["prunable_weights"] == 12


def test_usage_errors_exit_2_with_one_line(capsys):
    for argv in (["eval", "demo"], ["frobnicate"], ["eval", "demo", "--data", "digits", "--batch-size", "0"]):
        code, out, err = _run(capsys, *argv)
        assert code == 2, argv
        assert err.count("\n") == 1 and "Traceback" not in err and "--help" in err
    assert "--data" in _run(capsys, "eval", "demo")[2]


def test_help_exits_0(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0 and "info" in out and "export" in out


def test_every_commands_help_prints(capsys):
    """argparse formats each help string with % again: a bare % in one ('95% interval') crashed
    `prune --help` with a TypeError instead of printing it."""
    for command in ("info", "eval", "compare", "export", "prune", "sweep", "sensitivity"):
        code, out, err = _run(capsys, command, "--help")
        assert code == 0 and "Traceback" not in err and f"usage: chita-studio {command}" in out, command
    assert "its accuracy with its 95% interval" in " ".join(_run(capsys, "prune", "--help")[1].split())


# --------------------------------------------------------------------------------------------
# the desktop app


def test_no_command_opens_the_app(capsys, monkeypatch):
    seen = []
    fake = types.ModuleType("gui.app")
    fake.run_app = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "gui.app", fake)
    assert main(["--demo", "digits_cnn", "--screenshot", "shot.png"]) == 0
    assert seen[0].demo == "digits_cnn" and seen[0].screenshot == "shot.png"
    assert main([]) == 0 and len(seen) == 2


def test_open_data_arch_and_preset_reach_the_app(capsys, monkeypatch):
    seen = []
    fake = types.ModuleType("gui.app")
    fake.run_app = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "gui.app", fake)
    assert main(["--open", "r20.pt", "--arch", "resnet20", "--data", "cifar", "--preset", "resnet20"]) == 0
    args = seen[0]
    assert (args.model, args.arch, args.data, args.preset) == ("r20.pt", "resnet20", "cifar", "resnet20")
    assert main([]) == 0 and seen[1].model is None and seen[1].data is None


@pytest.mark.parametrize("argv, words", [
    (["--arch", "resnet20"], ["--arch", "--open"]),
    (["--data", "digits", "--preset", "digits", "--demo", "digits_mlp"], []),  # valid: demo + data
    (["--preset", "digits"], ["--preset", "--data"]),
    (["--open", "m.pt", "--demo", "digits_mlp"], ["--open", "--demo"]),
    (["--arch", "mlpnet", "info", "demo"], ["--arch", "'info'", "after"]),
])
def test_app_options_used_wrongly_say_how(capsys, monkeypatch, argv, words):
    seen = []
    fake = types.ModuleType("gui.app")
    fake.run_app = lambda args: seen.append(args) or 0
    monkeypatch.setitem(sys.modules, "gui.app", fake)
    code, out, err = _run(capsys, *argv)
    if not words:
        assert code == 0 and seen and seen[0].data == "digits" and seen[0].demo == "digits_mlp"
        return
    assert code == 2 and not seen and "Traceback" not in err
    assert all(w in err for w in words), err


def test_missing_app_is_a_clear_message(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gui.app", None)  # makes the import fail
    code, out, err = _run(capsys)
    assert code == 2
    assert "desktop app cannot start" in err and "--help" in err and "Traceback" not in err


def test_core_cli_imports_the_gui_only_to_open_the_app():
    tree = ast.parse(open(cli.__file__, encoding="utf-8").read())
    gui_imports = []
    for func in [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)] + [tree]:
        for node in ast.walk(func) if func is not tree else ast.iter_child_nodes(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n.split(".")[0] in ("gui", "PySide6", "PyQt6", "pyqtgraph") for n in names):
                    gui_imports.append(getattr(func, "name", "<module>"))
    assert gui_imports == ["_run_gui"]


# --------------------------------------------------------------------------------------------
# TextProgress


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_progress_on_a_terminal_is_throttled_and_shows_eta():
    stream, clock = _Tty(), _Clock()
    progress = TextProgress(stream, interval=0.2, clock=clock)
    for i in range(101):  # 101 reports in 2 s
        clock.now = i * 0.02
        progress(Progress("evaluate", i, 100))
    text = stream.getvalue()
    updates = text.count("\r")
    assert 5 <= updates <= 13  # about one per 0.2 s, plus the first and the last
    assert "ETA 0:01" in text
    assert "100.0%" in text and "done in 0:02" in text and text.endswith("\n")


def test_text_progress_in_a_log_prints_a_few_lines():
    stream, clock = io.StringIO(), _Clock()
    progress = TextProgress(stream, log_interval=10.0, clock=clock)
    for i in range(1001):  # 1001 reports over 50 s
        clock.now = i * 0.05
        progress(Progress("sweep", i, 1000))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "sweep: 0%"
    assert lines[-1] == "sweep: done in 0:50"
    assert 3 <= len(lines) <= 8 and "\r" not in stream.getvalue()
    assert any("left" in line for line in lines)

    quiet = io.StringIO()
    TextProgress(quiet, quiet=True)(Progress("sweep", 1, 2))
    assert quiet.getvalue() == ""


def test_text_progress_shows_elapsed_not_a_fraction_for_work_of_unknown_length():
    """The mask search cannot know how many refreshes it needs: no bar, no ETA, elapsed time."""
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    clock = iter([0.0, 5.0]).__next__
    prog = TextProgress(stream, interval=0.0, clock=clock)
    prog(Progress("mask search", 3, 0, "3 swap steps"))
    prog(Progress("mask search", 40, 0, "40 swap steps"))
    out = stream.getvalue()
    assert "ETA" not in out and "%" not in out and "#" not in out
    assert "40 swap steps" in out and "0:05" in out


def test_text_progress_prints_no_line_for_the_end_of_a_job():
    """prune_path ends with a "done" report: the CLI prints the results, not "done: done in 0:00"."""
    stream = io.StringIO()
    prog = TextProgress(stream, interval=0.0)
    prog(Progress("gradients", 1, 2, "per-sample gradients 1/2"))
    prog(Progress("gradients", 2, 2, "per-sample gradients 2/2"))
    prog(Progress("done", 1, 1, "done"))
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("gradients:") for line in lines)


def test_a_closed_pipe_ends_the_cli_quietly(tmp_path):
    """`chita-studio info MODEL | head -1`: the reader goes away; the CLI stops with 141 (128 +
    SIGPIPE) and no traceback, not with "unexpected BrokenPipeError ... This is a bug"."""
    import subprocess

    code = "import sys; from core.cli import main; sys.exit(main(['info', 'demo:digits_cnn']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc.stdout.close()  # the reader is gone before the CLI writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "bug" not in err
