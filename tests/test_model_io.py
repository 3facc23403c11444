"""load_model for every format and every kind of bad input; describe_layers."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import sys
import warnings
import zipfile

import pytest
import torch
from torch import nn

from core.architectures import DigitsMLP, build_architecture, torchvision_weights_path
from core.errors import StudioError
from core.model_io import describe_layers, load_model
from core.prunable import prunable_parameters


class Evil:
    """Unpickling this creates ``marker``: proof that a load executed code from the file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _digits_state(name: str = "digits_mlp", seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_architecture(name).state_dict()


def _same_outputs(a: nn.Module, b: nn.Module, shape=(5, 1, 8, 8)) -> bool:
    x = torch.randn(*shape)
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


def _export_pt2(model: nn.Module, path: pathlib.Path, *, dynamic: bool = True) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    program = torch.export.export(model.eval(), (torch.randn(4, 1, 8, 8),), dynamic_shapes=dynamic_shapes)
    torch.export.save(program, str(path))


# ---------------------------------------------------------------------------------------------
# The literature's checkpoints
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    "file, arch, shape, preset",
    [
        ("mlpnet_mnist.pt", "mlpnet", (1, 28, 28), "mlpnet"),
        ("resnet20_cifar10.pt", "resnet20", (3, 32, 32), "resnet20"),
    ],
)
def test_shared_checkpoints_load(shared_dir, file, arch, shape, preset):
    loaded = load_model(shared_dir / "models" / file, arch=arch)
    assert loaded.format == "state_dict" and loaded.arch == arch
    assert loaded.input_shape == shape and loaded.preset == preset and loaded.num_classes == 10
    assert not loaded.model.training
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in loaded.model.parameters())
    reference = torch.load(shared_dir / "models" / file, weights_only=True)
    name = next(iter(reference))
    assert torch.equal(loaded.model.state_dict()[name], reference[name])


@pytest.mark.shared
def test_describe_layers_resnet20(shared_dir):
    loaded = load_model(shared_dir / "models" / "resnet20_cifar10.pt", arch="resnet20")
    layers = describe_layers(loaded.model)
    prunable = [layer for layer in layers if layer.prunable]
    assert len(prunable) == 22 and sum(layer.params for layer in prunable) == 270_896
    first = layers[0]
    assert (first.name, first.type, first.shape, first.params) == ("conv1.weight", "Conv2d", (16, 3, 3, 3), 432)
    bn = next(layer for layer in layers if layer.name == "bn1.weight")
    assert bn.type == "BatchNorm2d" and not bn.prunable
    assert layers[-1].name == "fc.bias" and layers[-1].type == "Linear" and not layers[-1].prunable


@pytest.mark.shared
def test_state_dict_without_arch_asks_for_it_and_suggests_the_match(shared_dir):
    path = shared_dir / "models" / "resnet20_cifar10.pt"
    with pytest.raises(StudioError) as err:
        load_model(path)
    text = str(err.value)
    assert "--arch" in text and "--arch resnet20" in text and str(path) in text and "mlpnet" in text


@pytest.mark.shared
def test_truncated_real_checkpoint(shared_dir, tmp_path):
    data = (shared_dir / "models" / "resnet20_cifar10.pt").read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StudioError) as err:
        load_model(path, arch="resnet20")
    assert "truncated or damaged" in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------
# state_dict variants
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": sd, "epoch": 3, "best_acc": 0.9},
        lambda sd: {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer_state_dict": {}},
    ],
    ids=["dataparallel-prefix", "wrapped-state_dict", "wrapped-and-prefixed"],
)
def test_state_dict_variants(tmp_path, wrap):
    state = _digits_state()
    path = tmp_path / "weights.ckpt"
    torch.save(wrap(state), path)
    loaded = load_model(path, arch="digits_mlp")
    assert loaded.format == "state_dict" and loaded.input_shape == (1, 8, 8) and loaded.preset == "digits"
    assert torch.equal(loaded.model.fc2.weight, state["fc2.weight"])


def test_legacy_serialization_and_half_precision(tmp_path):
    state = {k: v.half() for k, v in _digits_state().items()}
    path = tmp_path / "legacy.bin"  # extension says nothing: detection is by content
    torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = load_model(path, arch="digits_mlp")
    assert loaded.model.fc1.weight.dtype == torch.float32
    assert torch.equal(loaded.model.fc1.weight, state["fc1.weight"].float())


def test_input_shape_argument_overrides(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_digits_state(), path)
    assert load_model(path, arch="digits_mlp", input_shape=(64,)).input_shape == (64,)


def test_key_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(_digits_state("digits_mlp"), path)
    with pytest.raises(StudioError) as err:
        load_model(path, arch="digits_cnn")
    text = str(err.value)
    assert "missing" in text and "conv1.weight" in text and "bn1.running_mean" in text
    assert "unexpected" in text and "fc1.weight" in text and "digits_cnn" in text and str(path) in text
    assert "more" in text  # digits_cnn has more than 5 missing keys: the rest are counted


@pytest.mark.shared
def test_shape_mismatch_is_reported(shared_dir, tmp_path):
    state = torch.load(shared_dir / "models" / "resnet20_cifar10.pt", weights_only=True)
    state["conv1.weight"] = torch.zeros(16, 1, 3, 3)
    path = tmp_path / "resnet20_gray.pt"
    torch.save(state, path)
    with pytest.raises(StudioError) as err:
        load_model(path, arch="resnet20")
    text = str(err.value)
    assert "wrong shape" in text and "conv1.weight (16, 1, 3, 3) (expected (16, 3, 3, 3))" in text


@pytest.mark.shared
def test_another_class_count_is_read_from_the_checkpoint(shared_dir, tmp_path):
    """ResNet20 trained on 100 classes: the same network with a 100-row fc, built to fit."""
    state = torch.load(shared_dir / "models" / "resnet20_cifar10.pt", weights_only=True)
    state["fc.weight"] = torch.randn(100, 64)
    state["fc.bias"] = torch.randn(100)
    path = tmp_path / "resnet20_c100.pt"
    torch.save(state, path)
    loaded = load_model(path, arch="resnet20")
    assert loaded.num_classes == 100
    assert loaded.model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert torch.equal(loaded.model.state_dict()["fc.weight"], state["fc.weight"])


def test_fine_tuned_torchvision_head_is_read_from_the_checkpoint(tmp_path):
    """A torchvision network fine-tuned on 7 classes loads with --arch NAME: its 7-row classifier
    is the only difference from the 1000-class default."""
    tuned = build_architecture("mobilenet_v2", num_classes=7)
    path = tmp_path / "mobilenet_v2_7.pt"
    torch.save(tuned.state_dict(), path)
    loaded = load_model(path, arch="mobilenet_v2")
    assert loaded.num_classes == 7
    out = loaded.model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 7)
    assert torch.allclose(out, tuned.eval()(torch.zeros(1, 3, 64, 64)))


@pytest.mark.parametrize("wrap", ["plain", "data_parallel"])
def test_state_dict_metadata_survives_for_modules_that_read_it(tmp_path, wrap):
    """torchvision's MNASNet reads its version from the state_dict's _metadata and refuses a
    state_dict without it; stripping DataParallel's "module." prefix keeps the metadata."""
    net = build_architecture("mnasnet0_5", num_classes=3)
    state = net.state_dict()
    if wrap == "data_parallel":
        state = nn.DataParallel(net).state_dict()
        assert next(iter(state)).startswith("module.")
    path = tmp_path / "mnasnet.pt"
    torch.save(state, path)
    loaded = load_model(path, arch="mnasnet0_5")
    assert loaded.num_classes == 3
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.model(x), net.eval()(x))


def test_googlenet_saved_from_torchvisions_pretrained_build_loads_as_built(tmp_path):
    """torchvision's pretrained GoogLeNet has no auxiliary heads and normalises its own input;
    a checkpoint saved from it (here fine-tuned on 5 classes) loads with --arch googlenet and
    computes what it computed before."""
    import torchvision

    tuned = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True,
                                         init_weights=False, num_classes=5).eval()
    path = tmp_path / "googlenet_5.pt"
    torch.save(tuned.state_dict(), path)
    loaded = load_model(path, arch="googlenet")
    assert loaded.num_classes == 5 and loaded.model.transform_input and loaded.model.aux1 is None
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.model(x), tuned(x))
    partial = {k: v for k, v in tuned.state_dict().items() if not k.startswith("fc.")}
    torch.save(partial, path)  # missing more than the aux heads: refused, naming them
    with pytest.raises(StudioError, match="20 missing: aux1"):  # the 18 aux keys, fc's 2
        load_model(path, arch="googlenet")


def test_state_dict_without_arch_names_the_torchvision_network_it_fits(tmp_path, monkeypatch):
    """No --arch: the message names the torchvision network whose keys and shapes the file has,
    with its class count; the shapes are cached, so the second file is matched from the cache."""
    import torchvision

    from core.demo import cache_dir

    path = tmp_path / "tuned.pt"
    torch.save(build_architecture("mobilenet_v2", num_classes=7).state_dict(), path)
    with pytest.raises(StudioError, match="keys match torchvision's 'mobilenet_v2' with 7 classes: "
                                          "pass --arch mobilenet_v2"):
        load_model(path)
    assert list(cache_dir().glob("torchvision-*-state-shapes-2.json"))

    def no_build(*args, **kwargs):
        raise AssertionError("built a network instead of reading the cache")

    regnet_state = build_architecture("regnet_y_400mf", num_classes=10).state_dict()
    state = build_architecture("resnet18").state_dict()
    state.pop("bn1.num_batches_tracked")  # some checkpoints leave the counters out
    torch.save(state, path)
    monkeypatch.setattr(torchvision.models, "get_model", no_build)
    with pytest.raises(StudioError) as err:
        load_model(path)
    assert "keys match torchvision's 'resnet18': pass --arch resnet18" in str(err.value)
    # the RegNets (in the cache too) compute their widths on tensors, which the meta device
    # cannot read back
    torch.save(regnet_state, path)
    with pytest.raises(StudioError, match="keys match torchvision's 'regnet_y_400mf' with 10 "
                                          "classes: pass --arch regnet_y_400mf"):
        load_model(path)
    from torchvision.models import regnet
    assert regnet.BlockParams.__dict__["from_init_params"].__func__.__name__ == \
        "from_init_params"  # torchvision's own again after the shapes were built
    torch.save({"a.weight": torch.zeros(3, 3)}, path)  # nothing fits: no hint
    with pytest.raises(StudioError) as err:
        load_model(path)
    assert "keys match" not in str(err.value)


def test_checkpoint_of_a_module_that_held_the_network_loads_without_its_name(tmp_path):
    """A Lightning-style checkpoint: the state_dict under "state_dict", beside the epoch and the
    hyper-parameters, every key starting with the attribute that held the network ("model.")."""
    net = build_architecture("digits_cnn", num_classes=4)
    ckpt = {"epoch": 3, "hyper_parameters": {"lr": 0.1},
            "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    loaded = load_model(path, arch="digits_cnn")
    assert loaded.num_classes == 4
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(loaded.model(x), net.eval()(x))
    with pytest.raises(StudioError, match="keys match the built-in 'digits_cnn' with 4 classes: pass --arch digits_cnn"):
        load_model(path)


def test_head_and_another_layer_wrong_is_still_an_error(tmp_path):
    """Only the class count is inferred: a checkpoint that differs elsewhere too, or whose head
    rows disagree, is refused with every mismatch named."""
    state = build_architecture("digits_cnn", num_classes=4).state_dict()
    state["conv1.weight"] = torch.zeros(3, 1, 3, 3)
    path = tmp_path / "cnn.pt"
    torch.save(state, path)
    with pytest.raises(StudioError, match="conv1.weight"):
        load_model(path, arch="digits_cnn")
    state = build_architecture("digits_mlp", num_classes=4).state_dict()
    state["fc3.bias"] = torch.zeros(5)  # 4 rows of weight, 5 biases
    torch.save(state, path)
    with pytest.raises(StudioError, match="fc3.bias"):
        load_model(path, arch="digits_mlp")


def test_unknown_arch(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_digits_state(), path)
    with pytest.raises(StudioError, match="Unknown architecture 'lenet9'"):
        load_model(path, arch="lenet9")


def test_dict_without_tensors(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(StudioError, match="not a model or a state_dict") as err:
        load_model(path, arch="digits_mlp")
    assert "'epoch'" in str(err.value)


# ---------------------------------------------------------------------------------------------
# NaN / Inf
# ---------------------------------------------------------------------------------------------


def test_nan_weight_names_the_tensor(tmp_path):
    state = _digits_state()
    state["fc2.weight"][3, 4] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(StudioError) as err:
        load_model(path, arch="digits_mlp")
    assert "fc2.weight" in str(err.value) and "NaN" in str(err.value) and err.value.field == "fc2.weight"


def test_inf_buffer_names_the_tensor(tmp_path):
    state = _digits_state("digits_cnn")
    state["bn2.running_var"][0] = float("inf")
    path = tmp_path / "inf.pt"
    torch.save(state, path)
    with pytest.raises(StudioError, match="bn2.running_var"):
        load_model(path, arch="digits_cnn")


# ---------------------------------------------------------------------------------------------
# TorchScript and .pt2
# ---------------------------------------------------------------------------------------------


def test_torchscript_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_architecture("digits_cnn").eval()
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still loadable
        torch.jit.save(torch.jit.trace(model, torch.randn(2, 1, 8, 8)), str(path))
    loaded = load_model(path)
    assert loaded.format == "torchscript" and loaded.input_shape == () and loaded.arch is None
    assert _same_outputs(model, loaded.model)
    assert prunable_parameters(loaded.model) == ["conv1.weight", "conv2.weight", "fc.weight"]
    types = {layer.name: layer.type for layer in describe_layers(loaded.model)}
    assert types["conv1.weight"] == "Conv2d" and types["bn1.weight"] == "BatchNorm2d"
    with_arch = load_model(path, arch="digits_cnn")
    assert with_arch.input_shape == (1, 8, 8) and with_arch.preset == "digits"
    with pytest.raises(StudioError, match="Unknown architecture 'digits_cnm'"):
        load_model(path, arch="digits_cnm")


def test_pt2_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_architecture("digits_cnn").eval()
    path = tmp_path / "model.pt2"
    _export_pt2(model, path)
    loaded = load_model(path)
    assert loaded.format == "exported_program" and loaded.input_shape == (1, 8, 8)
    assert not loaded.model.training
    assert _same_outputs(model, loaded.model, shape=(3, 1, 8, 8))
    assert _same_outputs(model, loaded.model, shape=(1, 1, 8, 8))
    assert prunable_parameters(loaded.model) == ["conv1.weight", "conv2.weight", "fc.weight"]
    types = {layer.name: layer.type for layer in describe_layers(loaded.model)}
    assert types["conv1.weight"] == "Conv2d" and types["fc.weight"] == "Linear"
    assert types["fc.bias"] == "Linear" and types["bn1.weight"] == "BatchNorm"


def test_pt2_with_fixed_batch_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "fixed.pt2"
    _export_pt2(build_architecture("digits_mlp"), path, dynamic=False)
    with pytest.raises(StudioError, match="fixed batch size of 4") as err:
        load_model(path)
    assert "dynamic_shapes" in str(err.value)


def test_pt2_that_would_unpickle_needs_consent(tmp_path):
    path = tmp_path / "model.pt2"
    _export_pt2(build_architecture("digits_mlp"), path)
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(StudioError, match="--trust-pickle"):
        load_model(tampered)


# ---------------------------------------------------------------------------------------------
# Pickles
# ---------------------------------------------------------------------------------------------


def test_malicious_torch_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc1.weight": torch.zeros(2, 2), "payload": Evil(marker)}, path)
    with pytest.raises(StudioError) as err:
        load_model(path, arch="digits_mlp")
    text = str(err.value)
    assert "--trust-pickle" in text and "Nothing in it was executed" in text and str(path) in text
    assert not marker.exists()
    # The payload is real: with consent it runs (and the file is then not a usable model).
    with pytest.raises(StudioError):
        load_model(path, arch="digits_mlp", trust_pickle=True)
    assert marker.exists()


def test_malicious_plain_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil(marker), protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(StudioError, match="--trust-pickle"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("saver", ["torch", "pickle"])
def test_pickled_module_needs_consent_then_loads(tmp_path, saver):
    torch.manual_seed(0)
    model = DigitsMLP().eval()
    path = tmp_path / "whole.pt"
    if saver == "torch":
        torch.save(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    with pytest.raises(StudioError, match="--trust-pickle"):
        load_model(path)
    loaded = load_model(path, trust_pickle=True, input_shape=(1, 8, 8))
    assert loaded.format == "pickle" and loaded.input_shape == (1, 8, 8)
    assert isinstance(loaded.model, DigitsMLP) and _same_outputs(model, loaded.model)


def test_pickled_module_whose_class_is_gone(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "vanishing_net.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(2, 2)\n"
    )
    monkeypatch.syspath_prepend(str(package))
    import vanishing_net

    path = tmp_path / "net.pt"
    torch.save(vanishing_net.Net(), path)
    monkeypatch.delitem(sys.modules, "vanishing_net")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(package)])
    with pytest.raises(StudioError, match="not available here"):
        load_model(path, trust_pickle=True)


# ---------------------------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(StudioError, match="does not exist") as err:
        load_model(tmp_path / "nope.pt")
    assert "nope.pt" in str(err.value)


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(StudioError, match="folder"):
        load_model(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(StudioError, match="empty") as err:
        load_model(path, arch="digits_mlp")
    assert str(path) in str(err.value) and "save or copy" in str(err.value)


def test_truncated_legacy_file(tmp_path):
    buffer = io.BytesIO()
    torch.save(_digits_state(), buffer, _use_new_zipfile_serialization=False)
    path = tmp_path / "legacy_half.pt"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(StudioError, match="truncated or damaged"):
        load_model(path, arch="digits_mlp")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"this is not a model at all\n" * 20, "not a model file we can read"),
        (bytes(range(256)) * 4, "not a model file we can read"),
        (b"\x80\x02" + b"\xff garbage" * 30, "truncated or damaged"),
    ],
    ids=["text", "binary", "pickle-header-then-garbage"],
)
def test_garbage_bytes(tmp_path, content, fragment):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(StudioError, match=fragment) as err:
        load_model(path, arch="digits_mlp")
    assert str(path) in str(err.value) and "What to do" in str(err.value)


def test_zip_that_pytorch_did_not_write(tmp_path):
    path = tmp_path / "photos.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(StudioError, match="not one PyTorch wrote"):
        load_model(path)


def test_onnx_file_without_a_graph_is_refused_naming_it(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x07pytorch")  # ir_version 7, producer "pytorch", no graph
    with pytest.raises(StudioError) as err:
        load_model(path)
    assert "0 inputs and 0 outputs" in str(err.value) and err.value.field == "graph.input"
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------
# Named sources
# ---------------------------------------------------------------------------------------------


def test_torchvision_source_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = torchvision_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(build_architecture("resnet18").state_dict(), path)
    loaded = load_model("torchvision:resnet18")
    assert (loaded.format, loaded.arch, loaded.input_shape, loaded.preset, loaded.num_classes) == (
        "torchvision",
        "resnet18",
        (3, 224, 224),
        "imagenet",
        1000,
    )
    assert not loaded.model.training
    assert len(loaded.class_names) == 1000 and loaded.class_names[0] == "tench"  # named by the weights


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------


def test_safetensors_file_loads_like_a_state_dict(tmp_path, capsys):
    """A .safetensors state_dict (Hugging Face's format; it holds no code) loads as a state_dict
    does, by content whatever its name: without --arch it is refused naming the match, float16
    tensors load into the float32 network, a "model." prefix is stripped, and a cut file is
    refused as damaged. It then prunes and exports like any other model."""
    from safetensors.torch import save_file

    from core.cli import main

    state = _digits_state()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_model(path, arch="digits_mlp")
    assert loaded.format == "safetensors" and loaded.input_shape == (1, 8, 8) and loaded.preset == "digits"
    assert torch.equal(loaded.model.fc2.weight, state["fc2.weight"])
    with pytest.raises(StudioError, match="only weights") as err:
        load_model(path)
    assert err.value.field == "arch" and "digits_mlp" in str(err.value)

    half = tmp_path / "half.bin"  # the name says nothing: detection is by content
    save_file({f"model.{k}": v.half().contiguous() for k, v in state.items()}, str(half))
    again = load_model(half, arch="digits_mlp")
    assert again.format == "safetensors" and again.model.fc1.weight.dtype == torch.float32
    assert torch.equal(again.model.fc1.weight, state["fc1.weight"].half().float())

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StudioError, match="truncated or damaged") as err:
        load_model(cut, arch="digits_mlp")
    assert str(cut) in str(err.value)

    capsys.readouterr()
    assert main(["prune", str(path), "--arch", "digits_mlp", "--data", "digits", "--method", "magnitude",
                 "--sparsity", "0.5", "--out", str(tmp_path / "pruned.onnx"), "-q"]) == 0
    assert (tmp_path / "pruned.onnx").exists()
    assert main(["info", str(path), "--arch", "digits_mlp"]) == 0
    assert "Format:       safetensors" in capsys.readouterr().out
