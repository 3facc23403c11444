"""Which weights are prunable: every conv/linear weight by default, and the literature's presets.

Presets:

* ``"all"`` (default): the ``weight`` of every convolution and linear layer. For a model without
  such module types (a ``GraphModule`` from a ``.pt2`` file) the weights that feed a
  convolution/linear op in its graph, and failing that every parameter with two or more dimensions.
* ``"literature"``: the sets that the one-shot pruning papers (WoodFisher, CBS, CHITA) prune.
  ``resnet20``: all conv/linear weights except the two 1x1 shortcut convs (``downsample.0``), i.e.
  20 tensors and 268,336 weights instead of 22 and 270,896. ``mlpnet``: fc1, fc2, fc3 (32,360).
  Other architectures: the same as ``"all"``.
"""

from __future__ import annotations

from torch import nn

from core.errors import StudioError

PRESETS: tuple[str, ...] = ("all", "literature")

# Module types whose ``weight`` is prunable. TorchScript modules report these via ``original_name``.
PRUNABLE_TYPES: tuple[str, ...] = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
)

_FX_OP_TYPES = {
    "linear": "Linear",
    "conv1d": "Conv1d",
    "conv2d": "Conv2d",
    "conv3d": "Conv3d",
    "convolution": "Conv2d",
    "conv_transpose1d": "ConvTranspose1d",
    "conv_transpose2d": "ConvTranspose2d",
    "conv_transpose3d": "ConvTranspose3d",
    "addmm": "Linear",
    "mm": "Linear",
}
_FX_NORM_TYPES = {
    "batch_norm": "BatchNorm",
    "native_batch_norm": "BatchNorm",
    "_native_batch_norm_legit_no_training": "BatchNorm",
    "layer_norm": "LayerNorm",
    "native_layer_norm": "LayerNorm",
    "group_norm": "GroupNorm",
}

# Parameter-name fragments the literature leaves dense, per architecture.
_LITERATURE_EXCLUDE: dict[str, tuple[str, ...]] = {
    "resnet20": ("downsample.0.",),
}


def module_type_name(module: nn.Module) -> str:
    """The layer type's name, e.g. ``"Conv2d"`` (also for TorchScript modules)."""
    original = getattr(module, "original_name", None)
    if isinstance(original, str) and original:
        return original
    return type(module).__name__


def graph_param_types(model: nn.Module) -> dict[str, tuple[str, bool]]:
    """For an FX ``GraphModule`` (e.g. from ``.pt2``): parameter name -> (layer type, is the op's weight).

    Found from the graph's linear / convolution / normalisation ops. Empty for other models.
    """
    nodes = getattr(getattr(model, "graph", None), "nodes", None)
    if nodes is None:
        return {}
    found: dict[str, tuple[str, bool]] = {}
    try:
        for node in nodes:
            if node.op != "call_function":
                continue
            packet = getattr(node.target, "_overloadpacket", None)
            op = str(getattr(packet, "__name__", None) or getattr(node.target, "__name__", ""))
            layer = _FX_OP_TYPES.get(op) or _FX_NORM_TYPES.get(op)
            if layer is None:
                continue
            # The weight operand: linear/conv (input, weight, ...); addmm (bias, input, weight.t());
            # mm (input, weight.t()). addmm/mm see the weight through one transpose node.
            weight_index = {"addmm": 2, "mm": 1}.get(op, 1)
            for index, arg in enumerate(node.args):
                if index == weight_index and getattr(arg, "op", None) == "call_function" and arg.args:
                    arg = arg.args[0]
                if getattr(arg, "op", None) == "get_attr":
                    is_weight = index == weight_index and op in _FX_OP_TYPES
                    found.setdefault(str(arg.target), (layer, is_weight))
    except (AttributeError, TypeError):
        return {}
    return found


def graph_weight_types(model: nn.Module) -> dict[str, str]:
    """For an FX ``GraphModule``: name -> layer type of the weights of its linear/convolution ops."""
    return {name: layer for name, (layer, is_weight) in graph_param_types(model).items() if is_weight}


def _typed_weights(model: nn.Module) -> list[str]:
    names: list[str] = []
    params = dict(model.named_parameters())
    for mod_name, module in model.named_modules():
        if module_type_name(module) in PRUNABLE_TYPES:
            key = f"{mod_name}.weight" if mod_name else "weight"
            if key in params:
                names.append(key)
    return names


def prunable_parameters(
    model: nn.Module,
    arch: str | None = None,
    *,
    preset: str = "all",
    keep_first: bool = False,
    keep_last: bool = False,
) -> list[str]:
    """Names of the prunable weight tensors of ``model``, in the model's parameter order.

    ``preset`` is ``"all"`` or ``"literature"`` (see the module docstring; the literature preset
    needs ``arch``). ``keep_first`` / ``keep_last`` leave the first / last of them dense.
    """
    if preset not in PRESETS:
        raise StudioError(
            f"Unknown prunable-layer preset '{preset}'.",
            field="preset",
            fix=f"Use one of: {', '.join(PRESETS)}.",
        )
    names = _typed_weights(model)
    if not names:
        from_graph = graph_weight_types(model)
        order = [n for n, _ in model.named_parameters()]
        names = [n for n in order if n in from_graph]
        if not names:
            names = [n for n, p in model.named_parameters() if p.dim() >= 2]
    if preset == "literature" and arch in _LITERATURE_EXCLUDE:
        excluded = _LITERATURE_EXCLUDE[arch]
        names = [n for n in names if not any(part in n for part in excluded)]
    if keep_first and names:
        names = names[1:]
    if keep_last and names:
        names = names[:-1]
    return names


def count_weights(model: nn.Module, names: list[str] | tuple[str, ...]) -> int:
    """Total number of scalar weights in the named parameters."""
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise StudioError(
            f"The model has no parameter(s) named {', '.join(missing[:5])}.",
            field="layers",
            fix="Use names from the model's layer list (e.g. 'fc1.weight').",
        )
    return sum(params[n].numel() for n in names)


def weight_zero_fraction(model: nn.Module) -> float | None:
    """The fraction of zeros over a model's weight matrices and kernels (its parameters of two
    or more dimensions), or None where it has none: how sparse a file someone hands over is."""
    total = zeros = 0
    for p in model.parameters():
        if p.dim() >= 2:
            total += p.numel()
            zeros += int((p == 0).sum())
    return zeros / total if total else None
