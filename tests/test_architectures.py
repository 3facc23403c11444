"""Architectures by name, torchvision weights offline/present, and the prunable-weight presets."""

from __future__ import annotations

import gzip
import urllib.error

import numpy as np
import pytest
import torch
from torch import nn

from core.architectures import (
    ARCH_INFO,
    DIGITS_MEAN,
    DIGITS_STD,
    arch_info,
    build_architecture,
    torchvision_weights_path,
)
from core.errors import StudioError
from core.prunable import count_weights, prunable_parameters


def _shared_model(shared_dir, arch: str, file: str) -> nn.Module:
    model = build_architecture(arch)
    model.load_state_dict(torch.load(shared_dir / "models" / file, weights_only=True), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Built-in architectures
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_mlpnet_matches_checkpoint_and_reaches_published_accuracy(shared_dir):
    model = _shared_model(shared_dir, "mlpnet", "mlpnet_mnist.pt")
    assert [n for n, _ in model.named_parameters()] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    raw = gzip.open(shared_dir / "data/mnist/t10k-images-idx3-ubyte.gz").read()[16:]
    labels = gzip.open(shared_dir / "data/mnist/t10k-labels-idx1-ubyte.gz").read()[8:]
    x = torch.from_numpy(np.frombuffer(raw, np.uint8).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
    y = torch.from_numpy(np.frombuffer(labels, np.uint8).astype(np.int64))
    with torch.no_grad():
        acc = (model((x - 0.1307) / 0.3081).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(0.9397, abs=0.0005)  # README: 93.97% on the full test set


@pytest.mark.shared
def test_resnet20_matches_checkpoint_and_reaches_its_accuracy(shared_dir):
    model = _shared_model(shared_dir, "resnet20", "resnet20_cifar10.pt")
    data = np.load(shared_dir / "data/cifar10/test.npz")
    x = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        pred = model((x - 0.5) / 0.5).argmax(1)
    acc = (pred == torch.from_numpy(data["y"])).float().mean().item()
    assert acc == pytest.approx(0.910, abs=0.005)  # README: 91.0% on cifar10/test.npz
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in model.modules())


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_digits_architectures_take_8x8_images(name):
    model = build_architecture(name).eval()
    assert ARCH_INFO[name].input_shape == (1, 8, 8) and ARCH_INFO[name].preset == "digits"
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert build_architecture(name, num_classes=4)(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


def test_digits_cnn_has_batchnorm_and_digits_constants_are_sane():
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_architecture("digits_cnn").modules())
    assert 0.25 < DIGITS_MEAN < 0.35 and 0.3 < DIGITS_STD < 0.45


def test_unknown_architecture_lists_available_names():
    with pytest.raises(StudioError) as err:
        build_architecture("resnet21")
    text = str(err.value)
    assert "resnet21" in text and "mlpnet" in text and "resnet20" in text and "module:Class" in text
    assert err.value.field == "arch"


# ---------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------


def test_torchvision_names_build_with_imagenet_info():
    model = build_architecture("torchvision:mobilenet_v2", num_classes=7)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)
    assert isinstance(build_architecture("resnet18"), nn.Module)
    assert arch_info("resnet18").input_shape == (3, 224, 224)
    assert arch_info("torchvision:resnet18").preset == "imagenet"
    assert arch_info("inception_v3").input_shape == (3, 299, 299)


def test_pretrained_offline_names_the_expected_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert torchvision_weights_path("resnet18") == expected
    with pytest.raises(StudioError) as err:
        build_architecture("torchvision:resnet18", pretrained=True)
    text = str(err.value)
    assert str(expected) in text and "internet" in text and "resnet18-f37072fd.pth" in text
    assert not expected.exists()


def test_pretrained_loads_a_file_already_in_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def must_not_download(*args, **kwargs):
        raise AssertionError("the file is cached; nothing should be downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", must_not_download)
    torch.manual_seed(1)
    reference = build_architecture("resnet18").state_dict()
    path = torchvision_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference, path)

    model = build_architecture("torchvision:resnet18", pretrained=True)
    loaded = model.state_dict()
    assert torch.equal(loaded["fc.weight"], reference["fc.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], reference["layer4.1.bn2.running_var"])


def test_pretrained_cache_file_that_is_not_weights_only_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = torchvision_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(StudioError) as err:
        build_architecture("torchvision:resnet18", pretrained=True)
    assert str(path) in str(err.value) and "Delete the file" in str(err.value)


def test_pretrained_rejects_builtins_and_other_class_counts():
    with pytest.raises(StudioError, match="no downloadable pretrained weights"):
        build_architecture("resnet20", pretrained=True)
    with pytest.raises(StudioError, match="1000 classes"):
        build_architecture("torchvision:resnet18", num_classes=10, pretrained=True)


# ---------------------------------------------------------------------------------------------
# module:Class
# ---------------------------------------------------------------------------------------------


def test_module_class_is_imported_and_instantiated():
    model = build_architecture("core.architectures:DigitsCNN")
    assert type(model).__name__ == "DigitsCNN"


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("no_such_package_xyz.nets:Net", "Cannot import module"),
        ("core.architectures:NoSuchNet", "has no attribute"),
        ("torch.nn:Linear", "with no arguments"),
        ("collections:OrderedDict", "not a torch.nn.Module"),
        ("core.architectures:", "package.module:Class"),
    ],
)
def test_module_class_errors(name, fragment):
    with pytest.raises(StudioError, match=fragment):
        build_architecture(name)


def test_module_class_refuses_num_classes():
    with pytest.raises(StudioError, match="no arguments"):
        build_architecture("core.architectures:DigitsMLP", num_classes=3)


# ---------------------------------------------------------------------------------------------
# Prunable presets
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_resnet20_prunable_sets(shared_dir):
    model = _shared_model(shared_dir, "resnet20", "resnet20_cifar10.pt")
    every = prunable_parameters(model, "resnet20")
    assert len(every) == 22 and count_weights(model, every) == 270_896
    assert "layer2.0.downsample.0.weight" in every and "fc.weight" == every[-1]

    literature = prunable_parameters(model, "resnet20", preset="literature")
    assert len(literature) == 20 and count_weights(model, literature) == 268_336
    assert not any("downsample" in n for n in literature)
    assert literature[0] == "conv1.weight"

    inner = prunable_parameters(model, "resnet20", preset="literature", keep_first=True, keep_last=True)
    assert inner == literature[1:-1]


@pytest.mark.shared
def test_mlpnet_prunable_sets(shared_dir):
    model = _shared_model(shared_dir, "mlpnet", "mlpnet_mnist.pt")
    for preset in ("all", "literature"):
        names = prunable_parameters(model, "mlpnet", preset=preset)
        assert names == ["fc1.weight", "fc2.weight", "fc3.weight"]
        assert count_weights(model, names) == 32_360


def test_prunable_excludes_biases_and_batchnorm():
    names = prunable_parameters(build_architecture("digits_cnn"))
    assert names == ["conv1.weight", "conv2.weight", "fc.weight"]


def test_prunable_errors():
    model = build_architecture("digits_mlp")
    with pytest.raises(StudioError, match="preset"):
        prunable_parameters(model, preset="most")
    with pytest.raises(StudioError, match="nope.weight"):
        count_weights(model, ["nope.weight"])
