"""Loading a model from a file → :class:`LoadedModel`, and listing its layers.

Formats, recognised by content (not by extension):

* ``state_dict`` — a ``torch.save``'d dict of tensors (also wrapped under ``state_dict`` /
  ``model_state_dict`` / ``model``, and with DataParallel's ``module.`` prefix), plus an
  architecture name (``arch``, see :mod:`core.architectures`). Loaded with ``weights_only=True``.
* ``safetensors`` — a ``.safetensors`` file of tensors (Hugging Face's format): a state_dict as
  above, read with ``safetensors.torch.load_file``, which holds no code to run; half-precision
  tensors are loaded into the float32 network.
* ``torchscript`` — ``torch.jit.save`` archives (``torch.jit.load``).
* ``exported_program`` — ``torch.export.save`` ``.pt2`` archives. Their contents are checked
  first: an archive that would unpickle Python objects needs the same consent as a pickle.
* ``onnx`` — an ONNX classifier (``.onnx``), run with PyTorch operators by
  :mod:`core.onnx_import` (protobuf: nothing in the file is executed). Its weights keep their
  initializer names; where they are exactly the state_dict of a known architecture (a file
  exported from ``mlpnet``, ``resnet20`` or a torchvision network), that architecture is built
  and loaded with them, provided it gives the graph's outputs.
* ``pickle`` — a whole ``nn.Module`` saved with ``torch.save(model)`` or ``pickle``. Loading one
  runs code from the file, so it is only done with ``trust_pickle=True`` (``--trust-pickle`` on
  the command line, a yes in the app's dialog). Without it, nothing from the file is executed.

Besides files, ``load_model`` accepts ``demo:NAME`` (the built-in demo, see :mod:`core.demo`)
and ``torchvision:NAME`` (torchvision's pretrained weights, downloaded to the torch hub cache).

``LoadedModel.input_shape`` is ``()`` when it cannot be known (TorchScript and pickles without
an ``arch`` or ``input_shape`` argument): callers that need it ask the user then.
Models from ``.pt2`` files are ``torch.fx.GraphModule``s whose train/eval behaviour was fixed at
export; they do not support ``.train()`` / ``.eval()``, so only their ``training`` flags are cleared.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import warnings
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from core.architectures import (
    arch_info,
    available_architectures,
    build_architecture,
    names_help,
)
from core.errors import StudioError
from core.prunable import graph_param_types, module_type_name, prunable_parameters

FORMATS: tuple[str, ...] = ("state_dict", "safetensors", "torchscript", "exported_program", "onnx", "pickle",
                            "demo", "torchvision")

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 5  # how many offending keys an error message lists

_PICKLE_FIX = (
    "Only if you trust where this file came from, load it anyway: pass --trust-pickle on the "
    "command line, or answer yes when the app asks. Better: save the weights with "
    "torch.save(model.state_dict(), path) and load them with --arch."
)
_KNOWN_FORMATS = (
    "a PyTorch state_dict (.pt/.pth/.ckpt or .safetensors), a TorchScript archive, a torch.export .pt2 archive, "
    "an ONNX classifier (.onnx), or a pickled nn.Module"
)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for pruning, with what is known about its inputs."""

    model: nn.Module  # eval mode, float32, CPU
    source: str  # file path, or "demo:digits_mlp", or "torchvision:resnet18"
    format: str  # one of FORMATS
    arch: str | None  # architecture name if known
    input_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28); () if unknown
    preset: str | None  # data/normalisation preset name if known
    num_classes: int | None
    class_names: tuple[str, ...] | None = None  # by output index, where the weights name them (torchvision's)


@dataclass(frozen=True)
class LayerInfo:
    """One parameter tensor of a model, for layer tables."""

    name: str  # parameter name, e.g. "fc1.weight"
    type: str  # the owning module's type, e.g. "Linear", "Conv2d", "BatchNorm2d"
    shape: tuple[int, ...]
    params: int
    prunable: bool


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    trust_pickle: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> LoadedModel:
    """Load a model from ``path`` (or ``demo:NAME`` / ``torchvision:NAME``); see the module docstring.

    ``arch`` names the architecture for state_dict files (and supplies input shape and preset for
    other formats). ``input_shape`` (one sample, e.g. ``(3, 32, 32)``) overrides what is inferred.
    Every failure is a :class:`StudioError` naming the file and the fix.
    """
    text = str(path)
    if not Path(text).exists():
        if text.startswith("demo:"):
            from core.demo import load_demo

            return _with_input_shape(load_demo(text[len("demo:"):]), input_shape)
        if text.startswith("torchvision:"):
            return _load_torchvision(text, input_shape)
    file = Path(text)
    _check_file(file)
    kind = _sniff(file)
    if kind == "zip":
        kind = _zip_kind(file)
    elif kind == "unknown" and file.suffix.lower() == ".onnx":
        kind = "onnx"

    classes = None  # the checkpoint's class count where it differs from the architecture's
    if kind == "torchscript":
        model, fmt, found_arch, shape = _load_torchscript(file), "torchscript", None, ()
    elif kind == "exported_program":
        model, shape = _load_exported_program(file, trust_pickle)
        fmt, found_arch = "exported_program", None
    elif kind == "onnx":
        model, shape, found_arch, classes = _load_onnx(file, arch)
        fmt = "onnx"
    elif kind in ("torch_zip", "pickle"):
        obj, trusted = _torch_load(file, trust_pickle)
        model, fmt, found_arch, classes = _model_from_object(obj, file, arch, trusted)
        shape = ()
    elif kind == "safetensors":
        model, _, found_arch, classes = _model_from_object(_load_safetensors(file), file, arch, False)
        fmt, shape = "safetensors", ()
    else:
        raise StudioError(
            "This is not a model file we can read (no PyTorch or pickle signature found).",
            path=text,
            fix=f"Give {_KNOWN_FORMATS}.{_format_hint(file)}",
        )

    info = arch_info(arch) if arch else None
    if arch and info is None and fmt not in ("state_dict", "safetensors") and ":" not in arch:
        raise StudioError(
            f"Unknown architecture '{arch}'.",
            path=text,
            field="arch",
            fix=f"Leave --arch out for this {fmt} file, or use one of the names we know — {names_help()}.",
        )
    if info is None and found_arch:
        info = arch_info(found_arch)
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
    elif info is not None and not (fmt == "onnx" and shape):  # an ONNX graph's own input size stands
        shape = info.input_shape
    model = _finalise(model, text, fmt)
    num_classes = classes or (info.num_classes if info else None)
    names = info.class_names if info else None  # e.g. ResNet20's CIFAR-10 classes
    return LoadedModel(
        model=model,
        source=text,
        format=fmt,
        arch=found_arch or arch,
        input_shape=tuple(shape),
        preset=info.preset if info else None,
        num_classes=num_classes,
        class_names=names if names and num_classes == len(names) else None,
    )


def describe_layers(model: nn.Module) -> list[LayerInfo]:
    """Every parameter of ``model`` with its layer type, shape, size and whether it is prunable.

    ``prunable`` marks the default ("all") set of :func:`core.prunable.prunable_parameters`.
    """
    prunable = set(prunable_parameters(model, preset="all"))
    from_graph = graph_param_types(model)
    modules = dict(model.named_modules())  # (get_submodule is unsupported on ScriptModules)
    layers = []
    for name, param in model.named_parameters():
        owner = modules.get(name.rpartition(".")[0])
        kind = module_type_name(owner) if owner is not None else "?"
        if kind in ("Module", "?") and name in from_graph:
            kind = from_graph[name][0]
        layers.append(LayerInfo(name, kind, tuple(param.shape), param.numel(), name in prunable))
    return layers


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The state_dict inside ``obj`` (itself, or under a usual wrapper key), prefixes stripped; else None."""
    if not isinstance(obj, Mapping):
        return None
    candidates = [obj] + [obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
    for cand in candidates:
        tensors = {str(k): v for k, v in cand.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(cand):
            return _strip_prefixes(tensors, getattr(cand, "_metadata", None))
    return None


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def _check_file(file: Path) -> None:
    if not file.exists():
        raise StudioError(
            "The model file does not exist.",
            path=str(file),
            fix="Check the path (relative paths are taken from the current folder).",
        )
    if file.is_dir():
        raise StudioError(
            "This is a folder, not a model file.",
            path=str(file),
            fix="Give the path of the .pt/.pth/.pt2 file inside it.",
        )
    if file.stat().st_size == 0:
        raise StudioError(
            "The model file is empty (0 bytes).",
            path=str(file),
            fix="The save or the copy was probably interrupted: save or copy the model again.",
        )


def _sniff(file: Path) -> str:
    with open(file, "rb") as fh:
        head = fh.read(9)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # legacy torch.save, or a plain pickle
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= file.stat().st_size:
        return "safetensors"  # an 8-byte header length, then the JSON header
    return "unknown"


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file (nothing in it is executed)."""
    try:
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise StudioError("Reading .safetensors files needs the safetensors package, which is not installed.",
                          path=str(file), fix="Run scripts/setup.sh again, or pip install safetensors.") from None
    try:
        return load_file(str(file), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors' own error types: a damaged or cut file
        raise _corrupt(file, exc) from exc


def _zip_kind(file: Path) -> str:
    try:
        with zipfile.ZipFile(file) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise _corrupt(file, exc) from exc
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "exported_program"
    if any("/code/" in n for n in names) or any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch_zip"
    raise StudioError(
        "This is a zip archive but not one PyTorch wrote (no data.pkl, code/ or archive_format inside).",
        path=str(file),
        fix=f"Give {_KNOWN_FORMATS}.",
    )


def _format_hint(file: Path) -> str:
    suffix = file.suffix.lower()
    if suffix in (".h5", ".keras", ".pb"):
        return " Keras/TensorFlow models are not supported."
    return ""


def _corrupt(file: Path, exc: BaseException) -> StudioError:
    detail = str(exc).split(". ")[0].strip() or type(exc).__name__
    return StudioError(
        f"The model file is truncated or damaged and cannot be read ({detail}).",
        path=str(file),
        fix="The download, copy or save was probably interrupted: get or save the file again "
        "and check that its size matches the original.",
    )


def _pickle_refused(file: Path) -> StudioError:
    return StudioError(
        "This file contains pickled Python objects (not just tensors) that would execute code "
        "when loaded. Nothing in it was executed.",
        path=str(file),
        fix=_PICKLE_FIX,
    )


def _needs_code(exc: BaseException) -> bool:
    """True if a weights_only load failed because the pickle references Python code."""
    text = str(exc)
    return "Unsupported global" in text or ("GLOBAL" in text and "allowed global" in text)


def _plain_pickle_has_objects(file: Path) -> bool | None:
    """Statically scan a plain pickle (nothing is executed): True if it imports/calls Python objects,
    False if it is a clean pickle without them, None if it is not a complete pickle stream."""
    calls = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}
    found = False
    try:
        with open(file, "rb") as fh:
            for op, _arg, _pos in pickletools.genops(fh):
                if op.name in calls:
                    found = True
                if op.name == "STOP":
                    return found
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _torch_load(file: Path, trust_pickle: bool) -> tuple[Any, bool]:
    """torch.load with weights_only=True; with consent, fall back to a full unpickle."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as exc:
        safe_error = exc
    except (EOFError, RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        if _sniff(file) == "pickle" and "magic number" in str(exc).lower():
            safe_error = exc  # a plain pickle (not torch.save): decide below
        else:
            raise _corrupt(file, exc) from exc

    needs_code = _needs_code(safe_error)
    if not needs_code and _sniff(file) == "pickle":
        scan = _plain_pickle_has_objects(file)
        if scan is None:
            raise _corrupt(file, safe_error) from safe_error
        needs_code = scan
    if not needs_code:
        raise StudioError(
            f"This file is not a PyTorch model we can read ({_first_line(safe_error)}).",
            path=str(file),
            fix=f"Give {_KNOWN_FORMATS}.",
        ) from safe_error
    if not trust_pickle:
        raise _pickle_refused(file)
    return _trusted_load(file), True


def _trusted_load(file: Path) -> Any:
    """Full unpickle, code execution allowed (the user consented)."""
    try:
        try:
            return torch.load(file, map_location="cpu", weights_only=False)
        except RuntimeError as exc:
            if _sniff(file) != "pickle" or "magic number" not in str(exc).lower():
                raise
        with open(file, "rb") as fh:  # a plain pickle.dump, not torch.save
            return pickle.load(fh)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise StudioError(
            f"The pickled model refers to Python code that is not available here: {exc}.",
            path=str(file),
            fix="Make the module that defines the model's class importable (install it, or run "
            "from its folder), or load a state_dict with --arch package.module:Class.",
        ) from exc
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise _corrupt(file, exc) from exc
    except Exception as exc:
        raise StudioError(
            f"Unpickling the file failed: {type(exc).__name__}: {_first_line(exc)}.",
            path=str(file),
            fix="The file may need a different version of the code that saved it; ask its author "
            "for a state_dict, TorchScript or .pt2 export.",
        ) from exc


def _model_from_object(obj: Any, file: Path, arch: str | None, trusted: bool
                       ) -> tuple[nn.Module, str, str | None, int | None]:
    """Turn what torch.load returned into (model, format, arch, class count if the checkpoint's
    differs from the named architecture's default)."""
    if isinstance(obj, nn.Module):
        return obj, "pickle", None, None
    if trusted and isinstance(obj, Mapping):
        for key in ("model", "ema", "net"):
            if isinstance(obj.get(key), nn.Module):
                return obj[key], "pickle", None, None
    state = extract_state_dict(obj)
    if state is None:
        what = type(obj).__name__
        if isinstance(obj, Mapping):
            keys = ", ".join(repr(str(k)) for k in list(obj)[:8])
            what = f"a dict with keys {keys}"
        raise StudioError(
            f"The file holds {what}, not a model or a state_dict of tensors.",
            path=str(file),
            fix="Save the model's weights with torch.save(model.state_dict(), path), "
            "or the whole model with torch.export.save.",
        )
    if not arch:
        inner = _without_common_head(state)
        hint = ""
        for finder, whose in ((_matching_builtin, "the built-in"), (matching_torchvision, "torchvision's")):
            found = finder(state) or (finder(inner) if inner is not None else None)
            if found:
                name, classes = found
                with_classes = f" with {classes} classes" if classes else ""
                hint = f" Its keys match {whose} '{name}'{with_classes}: pass --arch {name}."
                break
        raise StudioError(
            "This file holds only weights (a state_dict); the network they belong to must be named."
            + hint,
            path=str(file),
            field="arch",
            fix=f"Pass --arch NAME (in the app: choose the architecture) — {names_help()}.",
        )
    with warnings.catch_warnings():  # GoogLeNet/Inception: a note on the random init the weights replace
        warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
        model = build_architecture(arch)
        expected = model.state_dict()
        if _keys(state) != _keys(expected):
            inner = _without_common_head(state)  # saved from a module that held the network
            if inner is not None and _keys(inner) == _keys(expected):
                state = inner
        info = arch_info(arch)
        classes = _class_count_in_state(expected, state, info.num_classes if info else None)
        options = _pretrained_build_options(arch, expected, state)
        if classes is not None or options:  # fine-tuned on another label set, or without aux heads
            model = build_architecture(arch, num_classes=classes, options=options)
    _load_state_strict(model, state, file, arch)
    return model, "state_dict", arch, classes


def _without_common_head(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """``state`` without the one module name that starts every key (a LightningModule's
    ``model.``, a wrapper's ``net.`` or ``backbone.``), metadata kept; None if there is none."""
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) != 1 or not all("." in k for k in state):
        return None
    return _strip_prefixes(dict(state), getattr(state, "_metadata", None), prefixes=(f"{heads.pop()}.",))


def _keys(d: Mapping[str, object]) -> set[str]:
    """A state_dict's keys without BatchNorm's ``num_batches_tracked`` counters, which some
    checkpoints leave out."""
    return {k for k in d if not k.endswith("num_batches_tracked")}


def _pretrained_build_options(arch: str, expected: Mapping[str, torch.Tensor],
                              state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Constructor options of torchvision's pretrained GoogLeNet, for a checkpoint made from it.

    ``googlenet(weights=...)`` drops the two auxiliary classifiers and normalises its input
    itself (``transform_input=True``); a state_dict saved from it, fine-tuned or not, lacks
    exactly the ``aux1.``/``aux2.`` keys that a fresh ``googlenet()`` has. Those missing keys,
    and no others, select the same build. Every other case gets no options."""
    if arch.removeprefix("torchvision:") != "googlenet":
        return {}
    missing = [k for k in expected if k not in state]
    if missing and all(k.startswith(("aux1.", "aux2.")) for k in missing):
        return {"aux_logits": False, "transform_input": True, "init_weights": False}
    return {}


def _class_count_in_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                          default: int | None) -> int | None:
    """The class count a named architecture's checkpoint was trained for, when it is not the
    architecture's ``default`` and that is the only difference; None otherwise.

    A torchvision network fine-tuned on 10 classes has a 10-row classifier where the default
    has 1000 rows. Only tensors whose first dimension is ``default`` may differ, all to the
    same count c, with every other dimension equal: the class count is the constructor
    argument that changes exactly those shapes. Anything else is left to the strict load,
    which names every mismatch.
    """
    if not default:
        return None
    counts = set()
    for k, v in state.items():
        e = expected.get(k)
        if e is None or e.shape == v.shape:
            continue
        if e.dim() == 0 or v.dim() != e.dim() or e.shape[0] != default or e.shape[1:] != v.shape[1:]:
            return None
        counts.add(int(v.shape[0]))
    return counts.pop() if len(counts) == 1 and min(counts) > 0 else None


def _strip_prefixes(state: dict[str, torch.Tensor], metadata: Mapping[str, Any] | None = None,
                    prefixes: tuple[str, ...] = _STRIP_PREFIXES) -> dict[str, torch.Tensor]:
    """``state`` without a wrapper's key prefix (``module.`` of DataParallel, ``_orig_mod.`` of
    torch.compile), keeping the per-module ``_metadata`` that torch.save stores with a
    state_dict: some modules read their version from it when loading (torchvision's MNASNet
    refuses a state_dict without it)."""
    removed = ""
    changed = True
    while changed and state:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                removed += prefix
                changed = True
    out: OrderedDict[str, torch.Tensor] = OrderedDict(state)
    if metadata is not None:
        meta = OrderedDict()
        for key, value in metadata.items():
            full = f"{key}." if key else ""  # "module.layers" → "module.layers."
            if full.startswith(removed):
                meta[full[len(removed):].rstrip(".")] = value
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def _matching_builtin(state: Mapping[str, torch.Tensor]) -> tuple[str, int | None] | None:
    """The built-in architecture whose state_dict has these keys and shapes, up to the class
    count, as (name, class count where it is not the built-in's), if any."""
    for name in available_architectures():
        expected = build_architecture(name).state_dict()
        if _keys(expected) != _keys(state):
            continue
        if all(expected[k].shape == state[k].shape for k in _keys(state)):
            return name, None
        info = arch_info(name)
        classes = _class_count_in_state(expected, state, info.num_classes if info else None)
        if classes is not None:
            return name, classes
    return None


def torchvision_state_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Every torchvision classification network's default state_dict as {key: shape}.

    Built on the meta device (no memory, no initialisation; about 9 s for the 80 networks),
    then kept in the user cache per torchvision version, so later calls read a file. The
    RegNets compute their stage widths on tensors, which the meta device cannot read back:
    that step runs on the CPU (:func:`_regnet_widths_on_cpu`).
    """
    import torchvision
    from torchvision.models import list_models

    from core.demo import cache_dir

    # "-2": the file of an earlier version of this function lacks the RegNets
    path = cache_dir() / f"torchvision-{torchvision.__version__}-state-shapes-2.json"
    try:
        return {name: {k: tuple(v) for k, v in keys.items()}
                for name, keys in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        pass
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    with warnings.catch_warnings(), _regnet_widths_on_cpu():
        warnings.simplefilter("ignore")
        for name in list_models(module=torchvision.models):
            try:
                with torch.device("meta"):
                    net = torchvision.models.get_model(name, weights=None)
            except Exception:  # a builder that computes on tensors the meta device cannot read
                continue
            shapes[name] = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(shapes))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: computed again next time
    return shapes


@contextmanager
def _regnet_widths_on_cpu() -> Iterator[None]:
    """While active, torchvision's RegNet block parameters are computed on the CPU even inside
    a ``torch.device("meta")`` block (they are read back with ``.tolist()``). If torchvision's
    RegNet module is not shaped as expected, nothing is changed (the RegNets then fail to
    build on meta and are left out)."""
    try:
        from torchvision.models import regnet
        original = regnet.BlockParams.__dict__["from_init_params"].__func__
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return original(cls, *args, **kwargs)

    regnet.BlockParams.from_init_params = classmethod(on_cpu)
    try:
        yield
    finally:
        regnet.BlockParams.from_init_params = classmethod(original)


def matching_torchvision(state: Mapping[str, torch.Tensor]) -> tuple[str, int | None] | None:
    """The torchvision network whose state_dict this is, as (name, class count where it is not
    the default 1000), or None: the same keys and shapes up to the classifier's rows (and
    GoogLeNet's auxiliary heads, which its pretrained build drops), ignoring BatchNorm's
    ``num_batches_tracked`` counters, which some checkpoints leave out."""
    have = _keys(state)
    for name, shapes in torchvision_state_shapes().items():
        want = _keys(shapes)
        if name == "googlenet" and not have & {k for k in want if k.startswith(("aux1.", "aux2."))}:
            want = {k for k in want if not k.startswith(("aux1.", "aux2."))}
        if want != have:
            continue
        expected = {k: torch.empty(shapes[k], device="meta") for k in want}
        if all(expected[k].shape == state[k].shape for k in want):
            return name, None
        classes = _class_count_in_state(expected, {k: state[k] for k in want}, 1000)
        if classes is not None:
            return name, classes
    return None


def _load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], file: Path, arch: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
        raise StudioError(
            f"The weights do not fit architecture '{arch}' — " + "; ".join(parts) + ".",
            path=str(file),
            field="arch",
            fix="Check that --arch names the network these weights were trained with (and its "
            "number of classes); for your own network use --arch package.module:Class.",
        )
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # RuntimeError, or a module's own check (ValueError, KeyError, …)
        raise StudioError(
            f"The weights do not fit architecture '{arch}': {_first_line(exc)}.",
            path=str(file),
            field="arch",
            fix="Check that --arch names the network these weights were trained with.",
        ) from exc


def _load_onnx(file: Path, arch: str | None) -> tuple[nn.Module, tuple[int, ...], str | None, int | None]:
    """(model, input shape, architecture, class count) of an ONNX file: the graph run with PyTorch
    operators, or the named (or recognised) architecture loaded with its weights where that gives
    the same outputs."""
    from core.onnx_import import onnx_to_torch

    graph, shape, graph_classes = onnx_to_torch(file)
    weights = {k: v for k, v in graph.state_dict().items() if not k.startswith("consts.")}
    name = arch
    if name is None and _plain_interface(graph):
        found = _matching_builtin(weights) or matching_torchvision(weights)
        name = found[0] if found else None
    if name is None:
        return graph, shape, None, graph_classes
    try:
        model, _fmt, found_arch, classes = _model_from_object(weights, file, name, trusted=False)
    except StudioError:
        if arch:  # asked for by name: say why it does not fit
            raise
        return graph, shape, None, graph_classes
    info = arch_info(name)
    probe_shape = shape or (info.input_shape if info else ())
    if not probe_shape or not _same_outputs(graph, model, probe_shape):
        if arch:
            raise StudioError(
                f"The ONNX graph's weights fit '{arch}', but that architecture does not compute what the graph does.",
                path=str(file), field="arch", fix="Leave --arch out: the graph itself is then run as it is.")
        return graph, shape, None, graph_classes
    return model, shape, found_arch, classes


def _plain_interface(graph: nn.Module) -> bool:
    """Whether a graph's file has the interface the app's export writes for any network: one
    channels-first float32 input named ``input``, one output named ``output``, no metadata. Only such a
    file is recognised as an architecture unasked: the architecture's own export would drop a
    channels-last layout, other outputs, names, metadata or float16 weights that code using the file
    relies on."""
    return (graph.input_permutation is None and not graph.extra_outputs and not graph.metadata_props
            and not graph.float16_io and not graph.float16_weights and not graph.float16_storage
            and (graph.input_name, graph.output_name) == ("input", "output"))


def _same_outputs(a: nn.Module, b: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether two networks give the same outputs on a few random inputs of ``shape``."""
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            ya, yb = a.eval()(x), b.eval()(x)
    except Exception:  # noqa: BLE001 - a shape the other network cannot take
        return False
    if not (isinstance(ya, torch.Tensor) and isinstance(yb, torch.Tensor)) or ya.shape != yb.shape:
        return False
    return bool(torch.allclose(ya, yb, rtol=1e-4, atol=1e-4 * float(ya.abs().max().clamp(min=1.0))))


def _load_torchscript(file: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:
        raise _corrupt(file, exc) from exc


def _pt2_needs_pickle(zf: zipfile.ZipFile) -> bool:
    """True if torch.export.load would unpickle Python objects from this archive (nothing is run here)."""
    for name in zf.namelist():
        if name.endswith("_config.json") and ("/data/weights/" in name or "/data/constants/" in name
                                               or name.startswith(("data/weights/", "data/constants/"))):
            config = json.loads(zf.read(name)).get("config", {})
            for entry in config.values():
                if entry.get("use_pickle") or not str(entry.get("path_name", "")).startswith(
                    ("weight_", "tensor_")
                ):
                    return True
        elif name.endswith(".pt") and ("/data/" in name or name.startswith("data/")):
            try:
                torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                return True
    return False


def _load_exported_program(file: Path, trust_pickle: bool) -> tuple[nn.Module, tuple[int, ...]]:
    try:
        with zipfile.ZipFile(file) as zf:
            risky = _pt2_needs_pickle(zf)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise _corrupt(file, exc) from exc
    if risky and not trust_pickle:
        raise _pickle_refused(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(file))
            model = program.module()
    except Exception as exc:
        raise _corrupt(file, exc) from exc

    shapes = _pt2_input_shapes(program)
    if shapes and shapes[0] and isinstance(shapes[0][0], int):
        raise StudioError(
            f"This .pt2 program was exported for a fixed batch size of {shapes[0][0]}, so it cannot "
            "run the batches that evaluation and pruning need.",
            path=str(file),
            fix="Export it again with a dynamic batch dimension: torch.export.export(model, (x,), "
            "dynamic_shapes=({0: torch.export.Dim('batch')},)), then torch.export.save.",
        )
    sample: tuple[int, ...] = ()
    if shapes and shapes[0] and all(isinstance(s, int) for s in shapes[0][1:]):
        sample = tuple(int(s) for s in shapes[0][1:])
    return model, sample


def _pt2_input_shapes(program: Any) -> list[tuple[Any, ...]]:
    """Shapes of the program's user inputs; ints for static dims, None for dynamic ones."""
    try:
        user_inputs = set(program.graph_signature.user_inputs)
        shapes = []
        for node in program.graph.nodes:
            if node.op == "placeholder" and node.name in user_inputs:
                val = node.meta.get("val")
                dims = getattr(val, "shape", None)
                if dims is None:
                    continue
                shapes.append(tuple(int(d) if isinstance(d, int) else None for d in dims))
        return shapes
    except AttributeError:
        return []


def _load_torchvision(source: str, input_shape: tuple[int, ...] | None) -> LoadedModel:
    name = source[len("torchvision:"):]
    model = build_architecture(source, pretrained=True)
    info = arch_info(source)
    model = _finalise(model, source, "torchvision")
    shape = tuple(input_shape) if input_shape is not None else (info.input_shape if info else ())
    from torchvision.models import get_model_weights

    names = tuple(get_model_weights(name).DEFAULT.meta.get("categories") or ()) or None
    return LoadedModel(model, source, "torchvision", name, shape, "imagenet", info.num_classes if info else None,
                       names)


def _with_input_shape(loaded: LoadedModel, input_shape: tuple[int, ...] | None) -> LoadedModel:
    if input_shape is None:
        return loaded
    return replace(loaded, input_shape=tuple(int(s) for s in input_shape))


# --------------------------------------------------------------------------------------------
# Final checks
# --------------------------------------------------------------------------------------------


def _finalise(model: nn.Module, source: str, fmt: str) -> nn.Module:
    """CPU, float32, eval mode; refuse NaN/Inf weights."""
    try:
        model = model.to("cpu")
        has_low_precision = any(
            t.is_floating_point() and t.dtype != torch.float32
            for t in list(model.parameters()) + list(model.buffers())
        )
        if has_low_precision:
            model = model.float()
    except Exception as exc:
        raise StudioError(
            f"Could not move the model to float32 on the CPU: {_first_line(exc)}.",
            path=source,
            fix="Save the model in float32 on the CPU and try again.",
        ) from exc
    if fmt == "exported_program":
        for module in model.modules():  # GraphModule.eval() is unsupported; behaviour is fixed at export
            module.training = False
    else:
        model.eval()
    bad = [
        name
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers())
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        more = f" and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        raise StudioError(
            f"The model has NaN or infinite values in {', '.join(bad[:_SHOW])}{more}.",
            path=source,
            field=bad[0],
            fix="The weights are broken (training diverged or the file was written badly): "
            "use an earlier checkpoint or retrain.",
        )
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = [
    "FORMATS",
    "LayerInfo",
    "LoadedModel",
    "describe_layers",
    "extract_state_dict",
    "load_model",
]
