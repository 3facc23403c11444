"""The pruned network's state_dict as a file (core.weights_export), and the CLI's --save-weights."""

from __future__ import annotations

import json
import os

import pytest
import torch

import core.weights_export as weights_export
from core.cli import main
from core.data import load_bundle
from core.demo import load_demo
from core.errors import StudioError
from core.evaluate import evaluate
from core.model_io import load_model
from core.pruning import PruneRequest, apply_result, prune


@pytest.fixture(scope="module")
def pruned():
    """The demo CNN (BatchNorm) pruned at 70% by magnitude with recalibration: zeros and new statistics."""
    demo = load_demo("digits_cnn")
    result = prune(demo.model, load_bundle("digits").calibration, PruneRequest(method="magnitude", sparsity=0.7))
    return demo.model, apply_result(demo.model, result), result


@pytest.mark.parametrize("name", ["pruned.safetensors", "pruned.pt"])
def test_saved_weights_open_again_bit_for_bit(tmp_path, pruned, name):
    """Every tensor of the state_dict (recalibrated BatchNorm statistics included) comes back
    bit for bit through load_model with the architecture; the zeros are the masks; the header
    of a .safetensors file carries the metadata; the model is not modified; nothing else is
    left in the folder."""
    dense, model, result = pruned
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = weights_export.save_weights(model, tmp_path / name, metadata={"method": "magnitude", "sparsity": 0.7})
    assert os.listdir(tmp_path) == [name] and report.bytes == (tmp_path / name).stat().st_size
    assert report.tensors == len(before) and report.format == ("safetensors" if name.endswith("safetensors") else "torch")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    loaded = load_model(tmp_path / name, arch="digits_cnn")
    back = loaded.model.state_dict()
    assert set(back) == set(before) and all(torch.equal(back[k], v) for k, v in before.items())
    for key, mask in result.masks.items():
        assert torch.equal(back[key] != 0, mask)
    assert any(not torch.equal(dense.state_dict()[k], v) for k, v in before.items() if "running_" in k)
    if name.endswith("safetensors"):
        from safetensors import safe_open

        with safe_open(str(tmp_path / name), "pt") as f:
            assert f.metadata() == {"method": "magnitude", "sparsity": "0.7"}


def test_a_bad_name_or_a_file_that_reads_back_wrong_saves_nothing(tmp_path, pruned, monkeypatch):
    _, model, _ = pruned
    with pytest.raises(StudioError, match="ending '.onnx'") as err:
        weights_export.save_weights(model, tmp_path / "w.onnx")
    assert err.value.field == "file name" and ".safetensors" in err.value.fix
    (tmp_path / "keep.pt").write_bytes(b"old")
    real = weights_export._read
    monkeypatch.setattr(weights_export, "_read", lambda path, fmt: {k: v + 1 if v.is_floating_point() else v
                                                                    for k, v in real(path, fmt).items()})
    with pytest.raises(StudioError, match="did not read back as written"):
        weights_export.save_weights(model, tmp_path / "keep.pt")
    assert os.listdir(tmp_path) == ["keep.pt"] and (tmp_path / "keep.pt").read_bytes() == b"old"


def test_prune_save_weights_from_the_cli(tmp_path, capsys):
    """prune --save-weights: the file opens with --arch and scores what the run scored; a name
    the option cannot write is refused before any work."""
    path = tmp_path / "w.safetensors"
    capsys.readouterr()
    assert main(["prune", "demo:digits_cnn", "--data", "digits", "--method", "chita", "--sparsity", "0.8",
                 "--samples", "128", "--save-weights", str(path), "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights_file"]["path"] == str(path) and out["weights_file"]["format"] == "safetensors"
    loaded = load_model(path, arch="digits_cnn")
    ev = evaluate(loaded.model, load_bundle("digits").evaluation)
    assert ev.accuracy == out["accuracy"]
    assert main(["prune", "demo", "--data", "digits", "--sparsity", "0.5", "--save-weights",
                 str(tmp_path / "w.txt"), "-q"]) == 2
    assert "--save-weights writes" in capsys.readouterr().err and not (tmp_path / "w.txt").exists()
