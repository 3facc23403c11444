"""Network definitions by name.

Names understood by :func:`build_architecture`:

* built-ins: ``mlpnet`` and ``resnet20`` (the one-shot pruning literature's MNIST and CIFAR-10
  checkpoints), ``digits_mlp`` and ``digits_cnn`` (the built-in demo on scikit-learn's digits);
* torchvision classification models, as ``resnet18`` or ``torchvision:resnet18``;
* ``package.module:Class`` — imports ``package.module`` and calls ``Class()`` with no arguments.
  **This runs the user's Python code.** Front ends only build such a name when the user typed it
  (``--arch mypkg.nets:Net`` on the command line, or the architecture field in the app): naming the
  class is the user's explicit consent to import it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from core.errors import StudioError

# Normalisation of scikit-learn's digits ("digits" preset): pixels are 0..16, scaled to x/16, then
# (x - DIGITS_MEAN) / DIGITS_STD. Computed once over all 1,797 images and fixed here so that the
# demo's cached weights and the data module always agree.
DIGITS_MEAN = 0.30526
DIGITS_STD = 0.37605

TORCHVISION_PREFIX = "torchvision:"


# CIFAR-10's classes in label order (the order of its batches, torchvision's and every checkpoint
# trained on it).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class ArchInfo:
    """What a named architecture expects: one sample's shape, its data preset and class count,
    and the names of its outputs where the architecture is tied to one dataset."""

    input_shape: tuple[int, ...]
    preset: str | None
    num_classes: int | None
    class_names: tuple[str, ...] | None = None


ARCH_INFO: dict[str, ArchInfo] = {
    "mlpnet": ArchInfo((1, 28, 28), "mlpnet", 10),
    "resnet20": ArchInfo((3, 32, 32), "resnet20", 10, CIFAR10_CLASSES),
    "digits_mlp": ArchInfo((1, 8, 8), "digits", 10),
    "digits_cnn": ArchInfo((1, 8, 8), "digits", 10),
}


# --------------------------------------------------------------------------------------------
# Built-in networks
# --------------------------------------------------------------------------------------------


class MLPNet(nn.Module):
    """MLPNet 784-40-20-10 with ReLU and no biases (WoodFisher / CBS / CHITA MNIST model)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 40, bias=False)
        self.fc2 = nn.Linear(40, 20, bias=False)
        self.fc3 = nn.Linear(20, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BatchNorm; 1x1 conv + BN shortcut when shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet20 for CIFAR: 16/32/64 channels, 3 blocks per stage, global average pool, fc 64->10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, stride=1)
        self.layer2 = self._stage(16, 32, stride=2)
        self.layer3 = self._stage(32, 64, stride=2)
        self.fc = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int, blocks: int = 3) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class DigitsMLP(nn.Module):
    """Demo MLP for 8x8 digits: 64-64-32-10 with ReLU."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class DigitsCNN(nn.Module):
    """Demo CNN for 8x8 digits: two 3x3 conv + BatchNorm + ReLU, 2x2 max pool, fc 512->10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = nn.functional.max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


_BUILTINS: dict[str, type[nn.Module]] = {
    "mlpnet": MLPNet,
    "resnet20": ResNet20,
    "digits_mlp": DigitsMLP,
    "digits_cnn": DigitsCNN,
}


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def torchvision_names() -> list[str]:
    """Names of torchvision's classification models (``resnet18``, ``mobilenet_v2``, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def available_architectures() -> list[str]:
    """The built-in architecture names (torchvision names and ``module:Class`` work too)."""
    return list(_BUILTINS)


def names_help() -> str:
    """One sentence listing the architecture names a user can pass."""
    return (
        f"built-in: {', '.join(_BUILTINS)}; any torchvision classification model "
        "(e.g. resnet18, mobilenet_v2, or torchvision:resnet18); or your own class as "
        "package.module:Class (imported and called with no arguments)"
    )


def _torchvision_name(name: str) -> str | None:
    """The torchvision model name behind ``name``, or None if it is not one."""
    bare = name[len(TORCHVISION_PREFIX):] if name.startswith(TORCHVISION_PREFIX) else name
    if bare in _BUILTINS or ":" in bare:
        return None
    return bare if bare in torchvision_names() else None


def _is_class_path(name: str) -> bool:
    return ":" in name and not name.startswith(TORCHVISION_PREFIX)


def arch_info(name: str) -> ArchInfo | None:
    """:class:`ArchInfo` for a built-in or torchvision name; None for ``module:Class`` or unknown."""
    if name in ARCH_INFO:
        return ARCH_INFO[name]
    if _is_class_path(name):
        return None
    tv = _torchvision_name(name)
    if tv is None:
        return None
    size = 224
    try:
        from torchvision.models import get_model_weights

        crop = get_model_weights(tv).DEFAULT.transforms.keywords.get("crop_size")
        if isinstance(crop, int):
            size = crop
    except (ValueError, AttributeError, KeyError):
        pass
    return ArchInfo((3, size, size), "imagenet", 1000)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def build_architecture(name: str, num_classes: int | None = None, *, pretrained: bool = False,
                       options: dict[str, object] | None = None) -> nn.Module:
    """Build the network called ``name`` with fresh (random) weights, or torchvision's pretrained ones.

    ``num_classes`` overrides the output size of built-in and torchvision models (``None`` keeps
    the default); ``options`` are further constructor arguments of a torchvision model built
    without pretrained weights (e.g. ``aux_logits=False``). ``pretrained`` is only for torchvision names: it loads torchvision's default
    ImageNet weights through its normal weights API (downloading them to the torch hub cache if
    needed). ``module:Class`` imports and instantiates a user class: see the module docstring.
    """
    name = name.strip()
    if name in _BUILTINS:
        if pretrained:
            raise StudioError(
                f"There are no downloadable pretrained weights for the built-in architecture '{name}'.",
                field="arch",
                fix="Load its checkpoint file with --arch instead (for example a state_dict .pt).",
            )
        return _BUILTINS[name](num_classes or ARCH_INFO[name].num_classes or 10)
    if _is_class_path(name):
        if pretrained or num_classes is not None:
            raise StudioError(
                f"'{name}' is built by calling the class with no arguments, so num_classes and "
                "pretrained weights cannot be applied to it.",
                field="arch",
                fix="Leave them out, or give your class defaults that match your checkpoint.",
            )
        return _build_from_class_path(name)
    tv = _torchvision_name(name)
    if tv is not None:
        return _build_torchvision(tv, num_classes, pretrained, options or {})
    raise StudioError(
        f"Unknown architecture '{name}'.",
        field="arch",
        fix=f"Use one of the names we know — {names_help()}.",
    )


def _build_from_class_path(name: str) -> nn.Module:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise StudioError(
            f"'{name}' is not of the form package.module:Class.",
            field="arch",
            fix="Write the importable module, a colon and the class name, e.g. mypkg.nets:Net.",
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise StudioError(
            f"Cannot import module '{module_name}' for architecture '{name}': {exc}.",
            field="arch",
            fix="Install the package that defines it, or run from the folder that contains it "
            "(or add that folder to PYTHONPATH).",
        ) from exc
    except Exception as exc:  # user code failed while importing
        raise StudioError(
            f"Importing '{module_name}' for architecture '{name}' failed: {type(exc).__name__}: {exc}.",
            field="arch",
            fix="Fix the error in that module and try again.",
        ) from exc
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise StudioError(
                f"Module '{module_name}' has no attribute '{attr}'.",
                field="arch",
                fix="Check the spelling of the class name after the colon.",
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise StudioError(f"'{name}' is not a class.", field="arch", fix="Name an nn.Module subclass.")
    try:
        model = obj()
    except TypeError as exc:
        raise StudioError(
            f"Could not create '{name}' with no arguments: {exc}.",
            field="arch",
            fix="Give the class's constructor defaults for every argument, or wrap it in a small "
            "subclass that does.",
        ) from exc
    except Exception as exc:
        raise StudioError(
            f"Creating '{name}' failed: {type(exc).__name__}: {exc}.",
            field="arch",
            fix="Fix the error in the class's constructor and try again.",
        ) from exc
    if not isinstance(model, nn.Module):
        raise StudioError(
            f"'{name}' created a {type(model).__name__}, not a torch.nn.Module.",
            field="arch",
            fix="Name an nn.Module subclass.",
        )
    return model


def torchvision_weights_path(name: str) -> Path:
    """Where torchvision keeps (or would download) the default weights of model ``name``."""
    from torchvision.models import get_model_weights

    url = get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _build_torchvision(name: str, num_classes: int | None, pretrained: bool,
                       options: dict[str, object]) -> nn.Module:
    import torchvision
    from torchvision.models import get_model_weights

    if not pretrained:
        kwargs = dict(options) if num_classes is None else {**options, "num_classes": num_classes}
        return torchvision.models.get_model(name, weights=None, **kwargs)

    weights = get_model_weights(name).DEFAULT
    if num_classes is not None and num_classes != len(weights.meta["categories"]):
        raise StudioError(
            f"torchvision's pretrained {name} has {len(weights.meta['categories'])} classes, not {num_classes}.",
            field="num_classes",
            fix="Leave num_classes out for pretrained weights, or load your own fine-tuned checkpoint.",
        )
    cached = torchvision_weights_path(name)
    was_cached = cached.is_file()
    try:
        # Downloads into the hub cache if missing; weights_only=True proves the file holds only tensors.
        weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except OSError as exc:  # URLError, HTTPError, timeouts, disk errors
        raise StudioError(
            f"Could not download torchvision's pretrained weights for {name} ({exc}). "
            f"They are expected at {cached}.",
            path=str(cached),
            fix=f"Place the file {cached.name} (from {weights.url}) at that path, or run once on a "
            "machine with internet access so torchvision downloads it.",
        ) from exc
    except Exception as exc:  # damaged or non-tensor file in the cache
        raise StudioError(
            f"The cached pretrained weights for {name} could not be read ({type(exc).__name__}: {exc}).",
            path=str(cached),
            fix="Delete the file so it is downloaded again, or replace it with the original "
            f"{cached.name} from {weights.url}.",
        ) from exc
    try:
        # The same file again, now through torchvision's own builder (which also handles
        # model-specific construction arguments); it was verified as weights-only above.
        return torchvision.models.get_model(name, weights=weights)
    except RuntimeError as exc:
        state = "" if was_cached else " (just downloaded)"
        raise StudioError(
            f"The cached weights{state} do not fit torchvision's {name}: {exc}",
            path=str(cached),
            fix=f"Delete the file so it is downloaded again, or replace it with the original from {weights.url}.",
        ) from exc
