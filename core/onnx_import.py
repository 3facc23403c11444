"""Opening an ONNX classifier as a PyTorch module, so that it can be pruned like any other.

``onnx_to_torch(file)`` reads the graph (protobuf: nothing in the file is executed) and returns an
:class:`OnnxGraphModule` that runs its nodes in order with PyTorch operators (with the input shape
and the class count where the graph fixes them). The nodes that carry
weights become real modules whose parameters are those weights, named after their initializers:

* ``Conv`` with a constant kernel → ``nn.Conv1d``/``nn.Conv2d`` (groups, strides, dilations,
  symmetric or asymmetric pads);
* ``Gemm`` with a constant B, and ``MatMul`` with a constant 2-D right-hand side (also through a
  ``Transpose`` of a constant, the way PyTorch exports ``nn.Linear``) → ``nn.Linear``;
* ``BatchNormalization`` with constant statistics → :class:`OnnxBatchNorm` (a ``BatchNorm2d``
  that takes any rank).

So a file PyTorch exported gets back its parameter names (``layer1.0.conv1.weight``), the engine's
closed-form per-sample gradients apply to its Conv and Linear layers (``batch_layouts``, measured
at import, says where each one's input keeps the images: first, or elsewhere as in an attention's
(tokens, images, features) and Swin's windows folded into the batch), BatchNorm can be
recalibrated, and export writes it out again. A graph that ends in Softmax returns probabilities;
the engine's losses then take their log as logits (``outputs_probabilities``). Every other node is
a stateless PyTorch function
(``SUPPORTED_OPS``); a graph with any other operator is refused naming it. Constants other than
weights are buffers of the module. Sparse initializers (``export_onnx(sparse=True)``) are read
as the dense tensors they stand for.
"""

from __future__ import annotations

import contextvars
import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import StudioError

_FIX = ("export the model from PyTorch as a state_dict (with --arch) or a TorchScript archive and "
        "open that instead; or export the ONNX file again with standard operators only")


class OnnxGraphModule(nn.Module):
    """An ONNX graph run with PyTorch: ``steps`` in the graph's (topological) order, each
    (op type, a submodule's path or a stateless function, input names, output names). Modules are
    looked up by path at every call, so a deep copy (the engine prunes copies) runs its own."""

    def __init__(self, input_name: str, output_name: str) -> None:
        super().__init__()
        self.input_name = input_name
        self.output_name = output_name
        self.steps: list[tuple[str, str | Callable[..., Any], tuple[str, ...], tuple[str, ...]]] = []
        self.consts = nn.Module()  # buffers: the graph's constants that are not weights
        self._const_names: dict[str, str] = {}  # graph name → buffer name
        self._dead: list[tuple[str, ...]] = []  # per step: values no later step reads (freed after it)
        self._in_place: list[bool] = []  # per step: a Relu or Add whose first input dies with it
        # the graph ends in Softmax: its outputs are probabilities, and the engine's cross-entropy
        # takes their log as logits (core.evaluate.as_logits); the module still returns them as is
        self.outputs_probabilities = False
        # where each Linear and Conv layer's input keeps the images (measured at import, or on
        # the first images a graph with an open input size gets; None until then): the engine's
        # closed-form gradient rows apply only to the layers named here (:func:`_batch_layouts`)
        self.batch_layouts: dict[str, tuple] | None = None
        # a graph that takes channels-last images (N×H×W×C, as Keras models converted by tf2onnx
        # do) and turns them channels-first itself: the module takes the app's N×C×H×W images and
        # permutes them by this first; export writes the file's own layout again (core.export)
        self.input_permutation: tuple[int, ...] | None = None
        # the file's metadata_props (e.g. class names a deployment reads back); export writes them again
        self.metadata_props: dict[str, str] = {}
        # the file's opset (default domain): export writes that opset again where it can, so the
        # pruned file loads in every runtime the source did
        self.source_opset: int | None = None
        # the graph's outputs after the first (e.g. probabilities beside logits): the engine uses the
        # first only; with ``all_outputs`` (export's own copy) the module returns them all, so the
        # pruned file has every output its source had
        self.extra_outputs: tuple[str, ...] = ()
        self.all_outputs = False
        # the input dimensions (in the file's layout, batch aside) the file leaves open, such as
        # the height and width of a network with global pooling; export keeps them open where the
        # pruned graph gives the same outputs at another size (core.export)
        self.open_input_dims: tuple[int, ...] = ()
        # the file takes and returns float16 (its weights too): the module runs in float32, and
        # export writes float16 again (core.export)
        self.float16_io = False
        # the file keeps its weights in float16 (most of its float constants), whatever its inputs
        # and outputs: a mixed-precision file (float32 in and out, Casts to float16 inside, as
        # onnxconverter-common's ``keep_io_types`` writes) is exported so again, not twice its size
        self.float16_weights = False
        # the file stores its weights in float16 only to read them through Casts to float32 (the
        # arithmetic is float32): core.export.float16_storage writes such files, and export stores
        # the pruned weights so again
        self.float16_storage = False
        # the batch size the file's input fixes (torch.onnx.export without dynamic axes writes 1,
        # and folds the batch into constant shapes such as a Flatten's Reshape to [1, -1]); None
        # where it is open. Reshape and Expand then take the batch the graph runs on where the
        # file's constant says this one (:func:`_with_batch`), so the graph runs on any batch
        self.fixed_batch: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_permutation is not None:
            x = x.permute(*self.input_permutation)
        if self.fixed_batch is None:
            return self._run(x)
        token = _RUNNING_BATCH.set((self.fixed_batch, _shape(x)[0]))
        try:
            return self._run(x)
        finally:
            _RUNNING_BATCH.reset(token)

    def _run(self, x: torch.Tensor) -> Any:
        env: dict[str, Any] = {self.input_name: x, "": None}
        for graph_name, buffer in self._const_names.items():
            env[graph_name] = getattr(self.consts, buffer)
        in_place_ok = not torch.is_grad_enabled()  # evaluation: nothing is kept for a backward pass
        for (op, fn, inputs, outputs), dead, in_place in zip(self.steps, self._dead, self._in_place):
            if in_place and in_place_ok:  # write into the dying input, as nn.ReLU(inplace=True) does
                a = env[inputs[0]]
                result = a.relu_() if op == "Relu" else _add_into(a, env[inputs[1]])
            else:
                call = self.get_submodule(fn) if isinstance(fn, str) else fn
                result = call(*[env[i] for i in inputs])
            if len(outputs) == 1:
                env[outputs[0]] = result
            else:
                for name, value in zip(outputs, result):
                    env[name] = value
            for name in dead:  # activations nothing reads again: let them go at once
                del env[name]
        if self.all_outputs and self.extra_outputs:
            return (env[self.output_name], *(env[name] for name in self.extra_outputs))
        return env[self.output_name]

    def measure_batch_layouts(self, shape: tuple[int, ...]) -> dict[str, tuple]:
        """``batch_layouts`` for images of ``shape`` (one sample), measured once."""
        if self.batch_layouts is None:
            self.batch_layouts = _batch_layouts(self, tuple(shape))
        return self.batch_layouts

    def plan(self) -> None:
        """Note after which step each intermediate value is read for the last time."""
        last: dict[str, int] = {}
        for k, (_op, _fn, inputs, outputs) in enumerate(self.steps):
            for name in (*inputs, *outputs):
                last[name] = k
        keep = {self.input_name, self.output_name, *self.extra_outputs, "", *self._const_names}
        dead: list[list[str]] = [[] for _ in self.steps]
        for name, k in last.items():
            if name not in keep:
                dead[k].append(name)
        self._dead = [tuple(d) for d in dead]
        # in place only on a value no view shares memory with: not made by a view-returning op,
        # nor read by one (whose view may still be alive)
        views = [(inputs[0], outputs) for op, _fn, inputs, outputs in self.steps if op in _VIEW_OPS and inputs]
        shared = {src for src, _ in views} | {o for _, outs in views for o in outs}
        self._in_place = [op in ("Relu", "Add") and bool(inputs) and inputs[0] in dead[k]
                          and inputs.count(inputs[0]) == 1 and inputs[0] not in shared
                          for k, (op, _fn, inputs, _outputs) in enumerate(self.steps)]


def _add_into(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, written into ``a`` where the sum has a's shape and type."""
    if torch.broadcast_shapes(a.shape, b.shape) == a.shape and torch.result_type(a, b) == a.dtype:
        return a.add_(b)
    return a + b


_VIEW_OPS = frozenset({"Identity", "Dropout", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice",
                       "Cast", "Expand", "Einsum", "Split", "DepthToSpace", "SpaceToDepth"})
"""Operators whose PyTorch result may share memory with their input."""


# ---------------------------------------------------------------------------------------------
# public API


def onnx_to_torch(file: str | Path) -> tuple[OnnxGraphModule, tuple[int, ...], int | None]:
    """(module in eval mode, input shape of one sample (``()`` where the graph leaves it open),
    class count (None where the output's last dimension is open)) for the ONNX classifier in
    ``file``. A graph whose image input is channels last (N×H×W×C: grey, or turned channels first
    by the graph's own Transposes; :func:`_takes_channels_last`) gives its shape channels first,
    and its module takes channels-first images (``input_permutation``). Raises
    :class:`StudioError` naming the file, the node and the operator for graphs it cannot run."""
    import onnx

    path = str(file)
    try:
        proto = onnx.load(path)
    except Exception as err:  # noqa: BLE001 - protobuf raises many types
        raise StudioError(f"This .onnx file could not be read ({_first_line(err)}).", path=path,
                          fix="Check that the file is complete; export it again.") from None
    graph = proto.graph
    sort_nodes(graph, path)
    consts = _constants(graph)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or not graph.output:
        raise StudioError(f"The ONNX graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
                          "a classifier with one image input and class scores out is needed.",
                          path=path, field="graph.input", fix=_FIX)
    unsupported = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")
                          or (n.op_type not in SUPPORTED_OPS and n.op_type != "Constant")})
    if unsupported:
        first = next(n for n in graph.node if n.op_type in unsupported)
        raise StudioError(
            f"The ONNX graph uses operators that CHITA Studio cannot run in PyTorch: {', '.join(unsupported)} "
            f"(first at node '{first.name or first.output[0]}').", path=path, field="op_type", fix=_FIX)
    module = OnnxGraphModule(inputs[0].name, graph.output[0].name)
    module.extra_outputs = tuple(o.name for o in graph.output[1:])
    builder = _Builder(module, consts, path)
    for node in graph.node:
        builder.add(node)
    builder.finish()
    module.outputs_probabilities = _ends_in_softmax(graph)
    module.metadata_props = {p.key: p.value for p in proto.metadata_props}
    module.source_opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    out_dims = graph.output[0].type.tensor_type.shape.dim
    classes = out_dims[-1].dim_value if out_dims and out_dims[-1].HasField("dim_value") else None
    shape = _input_shape(inputs[0])
    channels_last = _takes_channels_last(graph, inputs[0])
    if channels_last:
        module.input_permutation = CHANNELS_LAST
        shape = (shape[2], shape[0], shape[1]) if shape else ()
    module.float16_io = inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    module.float16_storage = _float16_storage(graph)
    module.float16_weights = _float16_weights(graph) and not module.float16_storage
    first = inputs[0].type.tensor_type.shape.dim
    module.fixed_batch = first[0].dim_value if len(first) and first[0].dim_value > 0 else None
    dims = inputs[0].type.tensor_type.shape.dim
    channel = (3 if channels_last else 1) if len(dims) == 4 else None  # the weights fix the channels
    module.open_input_dims = tuple(k for k, d in enumerate(dims) if k > 0 and k != channel and not d.dim_value)
    module.eval()
    if shape and module.fixed_batch is not None:
        _check_other_batches(module, shape, path, inputs[0].name)
    if shape:  # else on the first images the engine computes gradients on
        module.measure_batch_layouts(shape)
    return module, shape, classes or None


def _check_other_batches(module: OnnxGraphModule, shape: tuple[int, ...], path: str, input_name: str) -> None:
    """A graph whose file fixes the batch must give each image the same outputs alone and
    beside others (the engine runs hundreds at once): raise :class:`StudioError` where it does not."""
    gen = torch.Generator().manual_seed(0)
    one = torch.randn(1 + module.fixed_batch, *shape, generator=gen)
    failure = None
    try:
        with torch.no_grad():
            alone = [torch.as_tensor(module(one[i:i + module.fixed_batch])) for i in range(2)]
            together = torch.as_tensor(module(one))
        for i, out in enumerate(alone):
            if together.shape[0] != one.shape[0] or not torch.allclose(
                    together[i:i + 1], out[:1], rtol=1e-4, atol=1e-5 * max(1.0, float(out.abs().max()))):
                failure = "its outputs for an image change when other images are beside it"
    except Exception as err:  # noqa: BLE001 - the graph's own error, reported below
        failure = _first_line(err)
    if failure is not None:
        b = module.fixed_batch
        raise StudioError(
            f"The ONNX graph was exported for a batch of exactly {b} image{'s' if b > 1 else ''} and does not run on "
            f"other batches ({failure}).", path=path, field="graph.input",
            fix=f"Export the model again with an open batch: torch.onnx.export(..., "
                f"dynamic_shapes=({{0: torch.export.Dim('batch')}},)) with torch's default exporter, or "
                f"torch.onnx.export(..., dynamo=False, dynamic_axes={{'{input_name}': {{0: 'batch'}}}}).")


def _batch_layouts(module: OnnxGraphModule, shape: tuple[int, ...]) -> dict[str, tuple]:
    """Where each Linear and Conv layer's input keeps the images (``core.fisher.batch_layouts``).

    A graph's MatMul may see other layouts than images first: PyTorch's attention exports its
    input projection on (tokens, images, features) and its output projection on
    (tokens·images, features), and Swin folds its windows into the first dimension (images·
    windows). Per-sample gradients are then still one product per image, once the images are
    brought to the front. Layers left out take torch.func's general path; so does every layer
    where the graph does not run on the probe's batches."""
    from core.fisher import batch_layouts

    layers = {name: m for name, m in module.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
    return batch_layouts(module, shape, layers)


# ---------------------------------------------------------------------------------------------
# building


class _Builder:
    def __init__(self, module: OnnxGraphModule, consts: dict[str, np.ndarray], path: str) -> None:
        self.module, self.consts, self.path = module, consts, path
        self.used: set[str] = set()  # constants the remaining steps read
        self.aliases: dict[str, str] = {}  # Transpose outputs of constants → the constant's name

    def fail(self, node: Any, why: str) -> StudioError:
        return StudioError(f"ONNX node '{node.name or node.output[0]}' ({node.op_type}): {why}.",
                           path=self.path, field="op_type", fix=_FIX)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def add(self, node: Any) -> None:
        attrs = _attributes(node)
        op = node.op_type
        if op == "Identity" and node.input[0] in self.consts:  # equal weights the exporter stored once:
            self.consts[node.output[0]] = self.consts[node.input[0]]  # each keeps its own name
            return
        if op == "Constant":
            self.consts[node.output[0]] = _constant_value(node, attrs)
            return
        if op == "Cast" and node.input[0] in self.consts and int(attrs["to"]) in _FLOAT_CASTS:
            # a weight stored in float16 and read as float32 (float16 storage): the constant it reads
            value = self.consts[node.input[0]]
            if int(attrs["to"]) == _FLOAT16:
                value = value.astype(np.float16).astype(np.float32)
            self.consts[node.output[0]] = value.astype(np.float32)
            return
        if op == "Transpose" and node.input[0] in self.consts:  # e.g. an nn.Linear weight before MatMul
            self.consts[node.output[0]] = np.transpose(self.consts[node.input[0]], attrs.get("perm"))
            self.aliases[node.output[0]] = self.aliases.get(node.input[0], node.input[0])
            return
        if op in _WEIGHTED:
            layer = _WEIGHTED[op](self, node, attrs)
            if layer is not None:
                name, mod, data_inputs = layer
                self.module.steps.append((op, _install(self.module, name, mod), tuple(data_inputs),
                                          tuple(node.output)))
                return
            if op not in SUPPORTED_OPS:
                raise self.fail(node, "its weights are not constants of the graph")
        fn = SUPPORTED_OPS[op](attrs, node)
        ins = tuple(node.input)
        self.used.update(i for i in ins if i in self.consts)
        self.module.steps.append((op, fn, ins, tuple(node.output)))

    def weight_name(self, name: str) -> str:
        return self.aliases.get(name, name)

    def layer_path(self, node: Any, weight: str) -> str:
        """Where a weighted node's layer goes: its weight's name less ``.weight``
        (``layer1.0.conv1``); for names an exporter made up (``onnx::Conv_203``, after folding
        BatchNorm into the conv) the module path in the node's name (``/layer1/layer1.0/conv1/Conv``)."""
        name = self.weight_name(weight)
        if _CLEAN_NAME.match(name):
            return _module_path(name)
        parts = [p for p in (node.name or "").split("/") if p][:-1]
        if parts and all(_CLEAN_NAME.match(p) for p in parts):
            dotted = [i for i, p in enumerate(parts) if "." in p]
            start = dotted[-1] if dotted else 0  # a part with dots is already the full path so far
            return ".".join(parts[start:]) if dotted else ".".join(parts)
        return name

    def finish(self) -> None:
        _strip_common_path(self.module)
        for i, name in enumerate(sorted(self.used)):
            value = torch.from_numpy(np.array(self.consts[name]))  # a writable copy
            buffer = f"c{i}_{_identifier(name)}"[:120]
            self.module.consts.register_buffer(buffer, value)
            self.module._const_names[name] = buffer
        self.module.plan()


def _install(root: nn.Module, dotted: str, mod: nn.Module) -> str:
    """Put ``mod`` at ``dotted`` (``layer1.0.conv1``) under ``root``, making containers on the
    way (a taken name gets a suffix); return the path it got."""
    parts = [_identifier(p) for p in dotted.split(".") if p] or ["layer"]
    parent = root
    path: list[str] = []
    for part in parts[:-1]:
        child = getattr(parent, part, None) if part in parent._modules else None
        if child is None or type(child) is not nn.Module:
            if part in parent._modules or hasattr(parent, part):
                part = _free(parent, part)
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
        path.append(part)
    leaf = parts[-1]
    if leaf in parent._modules or hasattr(parent, leaf):
        leaf = _free(parent, leaf)
    parent.add_module(leaf, mod)
    return ".".join([*path, leaf])


def _strip_common_path(root: OnnxGraphModule) -> None:
    """Where every layer sits under the same containers (tf2onnx's ``StatefulPartitionedCall/
    sequential_1/…``, a wrapper's ``model.``), take them off: the layers get the names their
    network gave them (``conv2d_1``, ``dense_1``)."""
    paths = [fn.split(".") for _op, fn, _i, _o in root.steps if isinstance(fn, str)]
    if not paths:
        return
    common: list[str] = []
    for parts in zip(*(p[:-1] for p in paths)):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    if not common:
        return
    container = root.get_submodule(".".join(common))
    clash = [name for name in container._modules if hasattr(root, name) and name != common[0]]
    if clash or type(container) is not nn.Module:
        return
    delattr(root, common[0])
    for name, child in list(container._modules.items()):
        root.add_module(name, child)
    cut = len(".".join(common)) + 1
    root.steps = [(op, fn[cut:] if isinstance(fn, str) else fn, ins, outs) for op, fn, ins, outs in root.steps]


def _free(parent: nn.Module, name: str) -> str:
    k = 1
    while f"{name}_{k}" in parent._modules or hasattr(parent, f"{name}_{k}"):
        k += 1
    return f"{name}_{k}"


def _identifier(text: str) -> str:
    out = re.sub(r"[^0-9A-Za-z_]", "_", text)
    return out or "_"


_CLEAN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def _module_path(weight: str) -> str:
    """``layer1.0.conv1.weight`` → ``layer1.0.conv1``, and an attention's
    ``blocks.0.attn.in_proj_weight`` → ``blocks.0.attn.in_proj``; other names are kept whole."""
    for suffix in (".weight", ".scale", "_weight"):
        if weight.endswith(suffix) and len(weight) > len(suffix):
            return weight[: -len(suffix)]
    return weight


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))  # a writable copy


def _conv(b: _Builder, node: Any, attrs: dict[str, Any]):
    w = b.const(node.input[1])
    bias = b.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w is None or (len(node.input) > 2 and node.input[2] and bias is None) or w.ndim not in (3, 4):
        return None
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise b.fail(node, f"auto_pad={attrs['auto_pad']} is not supported")
    dims = w.ndim - 2
    strides = tuple(attrs.get("strides", [1] * dims))
    dilations = tuple(attrs.get("dilations", [1] * dims))
    pads = list(attrs.get("pads", [0] * (2 * dims)))
    groups = int(attrs.get("group", 1))
    symmetric = pads[:dims] == pads[dims:]
    cls = nn.Conv2d if dims == 2 else nn.Conv1d
    conv = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=strides,
               padding=tuple(pads[:dims]) if symmetric else 0, dilation=dilations, groups=groups,
               bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(_tensor(w))
        if bias is not None:
            conv.bias.copy_(_tensor(bias))
    mod: nn.Module = conv
    if not symmetric:  # ONNX pads: all begins, then all ends; F.pad: last dimension first
        pad = [p for d in reversed(range(dims)) for p in (pads[d], pads[d + dims])]
        mod = _Padded(conv, tuple(pad))
    return b.layer_path(node, node.input[1]), mod, [node.input[0]]


class _Padded(nn.Module):
    def __init__(self, conv: nn.Module, pad: tuple[int, ...]) -> None:
        super().__init__()
        self.conv, self.pad = conv, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


def _gemm(b: _Builder, node: Any, attrs: dict[str, Any]):
    w = b.const(node.input[1])
    c = b.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    has_c = len(node.input) > 2 and bool(node.input[2])
    if (w is None or w.ndim != 2 or attrs.get("transA", 0) or (has_c and c is None)
            or float(attrs.get("alpha", 1.0)) != 1.0 or float(attrs.get("beta", 1.0)) != 1.0):
        return None
    weight = w if attrs.get("transB", 0) else w.T
    if c is not None and c.size not in (1, weight.shape[0]):
        return None
    return _linear(b, node, weight, None if c is None else np.broadcast_to(c.reshape(-1), (weight.shape[0],)))


def _matmul(b: _Builder, node: Any, attrs: dict[str, Any]):
    w = b.const(node.input[1])
    if w is None or w.ndim != 2 or node.input[0] in b.consts:
        return None
    return _linear(b, node, w.T, None)  # x @ B = x @ (Bᵀ)ᵀ: a Linear with weight Bᵀ


def _linear(b: _Builder, node: Any, weight: np.ndarray, bias: np.ndarray | None):
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(_tensor(weight))
        if bias is not None:
            lin.bias.copy_(_tensor(bias))
    return b.layer_path(node, node.input[1]), lin, [node.input[0]]


def _batchnorm(b: _Builder, node: Any, attrs: dict[str, Any]):
    values = [b.const(n) for n in node.input[1:5]]
    if any(v is None for v in values) or attrs.get("training_mode", 0) or len(node.output) > 1:
        return None
    scale, shift, mean, var = values
    bn = OnnxBatchNorm(scale.shape[0], eps=float(attrs.get("epsilon", 1e-5)),
                        momentum=1.0 - float(attrs.get("momentum", 0.9)))
    with torch.no_grad():
        bn.weight.copy_(_tensor(scale))
        bn.bias.copy_(_tensor(shift))
        bn.running_mean.copy_(_tensor(mean))
        bn.running_var.copy_(_tensor(var))
    return b.layer_path(node, node.input[1]), bn, [node.input[0]]


class OnnxBatchNorm(nn.BatchNorm2d):
    """ONNX BatchNormalization: dimension 1 normalised at any rank (BatchNorm2d wants 4-D input);
    a BatchNorm module like any other for recalibration."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return super().forward(x)
        shape = x.shape
        return super().forward(x.reshape(shape[0], shape[1], -1, 1)).reshape(shape)


_WEIGHTED: dict[str, Callable[..., Any]] = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul,
                                            "BatchNormalization": _batchnorm}


# ---------------------------------------------------------------------------------------------
# stateless operators: attrs, node → function of the node's inputs


def _ints(t: Any) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _axes(attrs: dict[str, Any], given: Any) -> list[int] | None:
    if given is not None:
        return _ints(given)
    return list(attrs["axes"]) if "axes" in attrs else None


def _pool(kind: str):
    def make(attrs: dict[str, Any], node: Any):
        kernel = tuple(attrs["kernel_shape"])
        dims = len(kernel)
        strides = tuple(attrs.get("strides", [1] * dims))
        pads = list(attrs.get("pads", [0] * (2 * dims)))
        ceil = bool(attrs.get("ceil_mode", 0))
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or pads[:dims] != pads[dims:] or dims != 2:
            raise StudioError(f"ONNX node '{node.name}' ({node.op_type}): only symmetric 2-D pooling is supported.",
                              field="op_type", fix=_FIX)
        if kind == "max":
            dil = tuple(attrs.get("dilations", [1, 1]))
            return lambda x: F.max_pool2d(x, kernel, strides, tuple(pads[:2]), dil, ceil_mode=ceil)
        count = bool(attrs.get("count_include_pad", 0))
        return lambda x: F.avg_pool2d(x, kernel, strides, tuple(pads[:2]), ceil_mode=ceil, count_include_pad=count)
    return make


def _reshape(attrs: dict[str, Any], node: Any):
    allow_zero = bool(attrs.get("allowzero", 0))

    def fn(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = shape.reshape(-1).long()
        if not allow_zero and bool((dims == 0).any()):  # 0: the input's size there
            k = min(len(dims), x.dim())
            head = torch.where(dims[:k] == 0, _shape(x)[:k], dims[:k])
            dims = torch.cat([head, dims[k:]])
        dims = _with_batch(x, dims, reshape=True)
        # while this thread traces an export: one Reshape node, its shape traced from the batch
        # (the tracer's state is per thread; torch.onnx.is_in_onnx_export() is not, and another
        # thread's export would send this one's torch.func gradients here)
        if torch.jit.is_tracing():
            return torch._reshape_from_tensor(x, dims)
        return x.reshape(dims.tolist())
    return fn


def _slice(attrs: dict[str, Any], node: Any):
    def fn(x, starts=None, ends=None, axes=None, steps=None):  # before opset 10: attributes
        starts = _ints(starts) if starts is not None else list(attrs["starts"])
        ends = _ints(ends) if ends is not None else list(attrs["ends"])
        axes = _ints(axes) if axes is not None else list(attrs["axes"]) if "axes" in attrs else list(range(len(starts)))
        steps = _ints(steps) if steps is not None else [1] * len(starts)
        index: list[Any] = [slice(None)] * x.dim()
        backwards = []
        for s, e, a, st in zip(starts, ends, axes, steps):
            n = x.shape[a]
            if st > 0:
                index[a] = slice(max(-n, min(s, n)), max(-n - 1, min(e, n)), st)
            elif st < 0:  # PyTorch slices only forwards: the positions, clamped as ONNX says
                s, e = s + n if s < 0 else s, e + n if e < 0 else e
                backwards.append((a % x.dim(), torch.tensor(range(max(0, min(s, n - 1)), max(-1, min(e, n - 1)), st),
                                                                 dtype=torch.int64)))
            else:
                raise StudioError(f"ONNX node '{node.name}' (Slice): a step of 0.", field="steps", fix=_FIX)
        x = x[tuple(index)]
        for a, positions in backwards:
            x = x.index_select(a, positions)
        return x
    return fn


def _squeeze(attrs, node):
    def fn(x, axes=None):
        ax = _axes(attrs, axes)
        return x.squeeze() if ax is None else x.squeeze(tuple(a % x.dim() for a in ax))
    return fn


def _unsqueeze(attrs, node):
    def fn(x, axes=None):
        for a in sorted(a % (x.dim() + len(_axes(attrs, axes))) for a in _axes(attrs, axes)):
            x = x.unsqueeze(a)
        return x
    return fn


def _reduce(torch_fn: Callable[..., torch.Tensor]):
    def make(attrs, node):
        keep = bool(attrs.get("keepdims", 1))

        def fn(x, axes=None):
            ax = _axes(attrs, axes)
            if not ax:
                return torch_fn(x, dim=tuple(range(x.dim())), keepdim=keep)
            return torch_fn(x, dim=tuple(ax), keepdim=keep)
        return fn
    return make


def _clip(attrs, node):
    lo_attr, hi_attr = attrs.get("min"), attrs.get("max")

    def fn(x, lo=None, hi=None):
        lo = lo_attr if lo is None else float(lo)
        hi = hi_attr if hi is None else float(hi)
        return torch.clamp(x, min=lo, max=hi)
    return fn


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _pad(attrs, node):
    mode = attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise StudioError(f"ONNX node '{node.name}' (Pad): mode '{mode}' is not supported "
                          f"({', '.join(_PAD_MODES)} are).", field="op_type", fix=_FIX)
    fill = float(attrs.get("value", 0.0))  # before opset 11 the constant was an attribute

    def fn(x, pads=None, value=None, axes=None):
        p = _ints(pads) if pads is not None else list(attrs.get("pads", []))
        dims = len(p) // 2
        ax = _ints(axes) if axes is not None else list(range(dims))
        full = [0] * (2 * x.dim())
        for i, a in enumerate(ax):
            a %= x.dim()
            full[2 * (x.dim() - 1 - a)] = p[i]
            full[2 * (x.dim() - 1 - a) + 1] = p[i + dims]
        if mode != "constant":  # PyTorch pads only the trailing dimensions in these modes
            while full and full[-2:] == [0, 0]:
                full = full[:-2]
            return F.pad(x, full, mode=_PAD_MODES[mode])
        return F.pad(x, full, value=fill if value is None or value.numel() == 0 else float(value))
    return fn


def _layer_norm(attrs, node):
    axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))

    def fn(x, scale, bias=None):
        a = axis % x.dim()
        return F.layer_norm(x, tuple(int(d) for d in x.shape[a:]), scale, bias, eps)  # static under tracing
    return fn


def _gather(attrs, node):
    axis = int(attrs.get("axis", 0))

    def fn(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        a = axis % x.dim()
        flat = idx.reshape(-1).long()
        if bool((flat < 0).any()):  # counted from the end
            flat = flat % x.shape[a]
        return torch.index_select(x, a, flat).reshape((*x.shape[:a], *idx.shape, *x.shape[a + 1:]))
    return fn


def _cast(attrs, node):
    from onnx import TensorProto

    to = int(attrs["to"])
    dtype = {TensorProto.FLOAT: torch.float32, TensorProto.DOUBLE: torch.float32, TensorProto.FLOAT16: torch.float32,
             TensorProto.INT64: torch.int64, TensorProto.INT32: torch.int64, TensorProto.BOOL: torch.bool}.get(to)
    if dtype is None:
        raise StudioError(f"ONNX node '{node.name}' (Cast): casting to type {to} is not supported.", field="op_type",
                          fix=_FIX)
    return lambda x: x.to(dtype)


def _gelu(attrs, node):
    approximate = attrs.get("approximate", "none")
    return lambda x: F.gelu(x, approximate="tanh" if approximate == "tanh" else "none")


def _constant_of_shape(attrs, node):
    value = attrs.get("value")
    fill = float(np.asarray(value).reshape(-1)[0]) if value is not None else 0.0
    return lambda shape: torch.full(_ints(shape), fill)


def _expand(attrs, node):
    def fn(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = shape.reshape(-1).long()
        if len(dims) >= x.dim():  # the shape's first size is x's first, or a new one in front of x's
            dims = _with_batch(x, dims, reshape=False)
        own = _shape(x)
        if len(own) < len(dims):  # ONNX broadcasts both ways: x's shape is aligned on the right
            own = torch.cat([torch.ones(len(dims) - len(own), dtype=torch.int64), own])
        elif len(dims) < len(own):
            dims = torch.cat([torch.ones(len(own) - len(dims), dtype=torch.int64), dims])
        # where one side is 1 the other is the size (sizes of 0 aside): the larger of the two;
        # sizes as 0-d tensors, as in Reshape, so that a re-export keeps a batch taken from Shape
        return x.expand([d for d in torch.maximum(own, dims)])
    return fn


def _range(attrs, node):
    """ONNX Range. While an export traces the graph, a Range whose bounds have moved between the
    calls run before (with the batch, as the probes at open run 1 and 2 images: torch's dynamo
    exporter takes a Range up to the batch) stays traced, so the written file keeps that size
    open; one whose bounds never moved is written as its values (fewer nodes)."""
    seen: set[tuple[Any, ...]] = set()  # the bounds of the calls run so far, two at most

    def fn(start, limit, delta):
        if torch.jit.is_tracing() and len(seen) > 1:
            bounds = [t if not t.dim() else t.reshape(()) for t in (start, limit, delta)]
            out = torch.arange(*bounds)
            return out if out.dtype == start.dtype else out.to(start.dtype)
        values = (start.item(), limit.item(), delta.item())
        if len(seen) < 2 and not torch.jit.is_tracing():
            seen.add(values)
        return torch.arange(*values).to(start.dtype)
    return fn


def _mod(attrs, node):
    return _simple(torch.fmod if int(attrs.get("fmod", 0)) else torch.remainder)(attrs, node)


def _gather_nd(attrs, node):
    b = int(attrs.get("batch_dims", 0))

    def fn(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        k = indices.shape[-1]
        batch = data.shape[:b]
        n = int(np.prod(batch, dtype=np.int64)) if b else 1
        flat = data.reshape(n, *data.shape[b:])
        idx = indices.long().reshape(n, -1, k)
        rows = torch.arange(n).reshape(n, 1).expand(n, idx.shape[1])
        out = flat[(rows, *idx.unbind(-1))]  # (n, m, *data.shape[b + k:]); negative indices count from the end
        return out.reshape(*indices.shape[:-1], *data.shape[b + k:])
    return fn


def _scatter_nd(attrs, node):
    reduction = attrs.get("reduction", "none")
    if reduction not in ("none", "add"):
        raise StudioError(f"ONNX node '{node.name}' (ScatterND): reduction '{reduction}' is not supported.",
                          field="op_type", fix=_FIX)

    def fn(data: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        k = indices.shape[-1]
        idx = indices.long().reshape(-1, k)
        values = updates.reshape(idx.shape[0], *data.shape[k:]).to(data.dtype)
        return data.index_put(tuple(idx.unbind(-1)), values, accumulate=reduction == "add")
    return fn


def _einsum(attrs, node):
    equation = attrs["equation"]
    if isinstance(equation, bytes):
        equation = equation.decode()
    return lambda *xs: torch.einsum(equation, *xs)


def _split(attrs, node):
    axis, parts = int(attrs.get("axis", 0)), len(node.output)

    def fn(x: torch.Tensor, split: torch.Tensor | None = None):
        sizes = _ints(split) if split is not None else list(attrs["split"]) if "split" in attrs else None
        if sizes is None:  # equal parts, the last one smaller where the size does not divide
            sizes = -(-x.shape[axis] // parts)
        out = torch.split(x, sizes, dim=axis)
        return out if parts > 1 else out[0]
    return fn


def _lrn(attrs, node):
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    front = (size - 1) // 2  # ONNX: floor((size − 1)/2) channels before, ceil(…) after

    def fn(x: torch.Tensor) -> torch.Tensor:
        pads = [0, 0] * (x.dim() - 2) + [front, size - 1 - front]
        window = F.pad(x * x, pads).unfold(1, size, 1).sum(-1)
        return x / (bias + alpha / size * window) ** beta
    return fn


def _instance_norm(attrs, node):
    eps = float(attrs.get("epsilon", 1e-5))
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


def _depth_to_space(attrs, node):
    bs, crd = int(attrs["blocksize"]), attrs.get("mode", "DCR") == "CRD"

    def fn(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if crd:
            t = x.reshape(b, c // bs ** 2, bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
        else:
            t = x.reshape(b, bs, bs, c // bs ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
        return t.reshape(b, c // bs ** 2, h * bs, w * bs)
    return fn


def _space_to_depth(attrs, node):
    bs = int(attrs["blocksize"])

    def fn(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.reshape(b, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
        return t.reshape(b, c * bs * bs, h // bs, w // bs)
    return fn


def _cumsum(attrs, node):
    exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))

    def fn(x: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        a = int(axis) % x.dim()
        t = x.flip(a) if reverse else x
        out = t.cumsum(a)
        if exclusive:
            out = out - t
        return out.flip(a) if reverse else out
    return fn


def _selu(attrs, node):
    alpha = float(attrs.get("alpha", 1.67326319217681884765625))
    gamma = float(attrs.get("gamma", 1.05070102214813232421875))
    return lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


def _prod(x: torch.Tensor, dim: tuple[int, ...], keepdim: bool) -> torch.Tensor:
    for d in sorted((d % x.dim() for d in dim), reverse=True):
        x = x.prod(d, keepdim=keepdim)
    return x


def _arg_extreme(largest: bool):
    def build(attrs, node):
        axis, keep = int(attrs.get("axis", 0)), bool(attrs.get("keepdims", 1))
        last = bool(attrs.get("select_last_index", 0))

        def fn(x: torch.Tensor) -> torch.Tensor:
            a = axis % x.dim()
            t = x.flip(a) if last else x
            idx = t.argmax(a, keepdim=keep) if largest else t.argmin(a, keepdim=keep)  # the first of equals
            return (x.shape[a] - 1 - idx) if last else idx
        return fn
    return build


def _top_k(attrs, node):
    axis, largest = int(attrs.get("axis", -1)), bool(attrs.get("largest", 1))

    def fn(x: torch.Tensor, k: torch.Tensor):
        # a stable sort: of equal values the lower index comes first, as ONNX asks
        values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
        n = int(k.reshape(-1)[0])
        return values.narrow(axis, 0, n), indices.narrow(axis, 0, n)
    return fn


def _group_norm(attrs, node):
    groups, eps = int(attrs["num_groups"]), float(attrs.get("epsilon", 1e-5))

    def fn(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if scale.numel() == groups and groups != c:  # opset 18: one scale and bias per group
            scale, bias = scale.repeat_interleave(c // groups), bias.repeat_interleave(c // groups)
        return F.group_norm(x, groups, scale, bias, eps)
    return fn


_RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric")
_NEAREST_MODES = {
    "round_prefer_floor": lambda v: np.ceil(v - np.float32(0.5)),
    "round_prefer_ceil": lambda v: np.floor(v + np.float32(0.5)),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _resize(attrs, node):
    """Resize in ``nearest`` or ``linear`` mode, one axis at a time, with the source coordinates
    of the ONNX specification (float32, as onnxruntime computes them); ``cubic``, antialiasing,
    ``tf_crop_and_resize`` and aspect-ratio policies are refused."""
    mode = attrs.get("mode", "nearest")
    coords = attrs.get("coordinate_transformation_mode", "half_pixel")
    rounding = attrs.get("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear") or coords not in _RESIZE_COORDINATES or rounding not in _NEAREST_MODES \
            or int(attrs.get("antialias", 0)) or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise StudioError(f"ONNX node '{node.name}' (Resize): mode '{mode}' with coordinate_transformation_mode "
                          f"'{coords}', nearest_mode '{rounding}', antialias {int(attrs.get('antialias', 0))} and "
                          f"keep_aspect_ratio_policy '{attrs.get('keep_aspect_ratio_policy', 'stretch')}' is not "
                          "supported (nearest or linear, without antialiasing, is).", field="op_type", fix=_FIX)
    given_axes = attrs.get("axes")

    def source(n_in: int, n_out: int, scale: float) -> np.ndarray:
        i, s = np.arange(n_out, dtype=np.float32), np.float32(scale)
        if coords == "align_corners":
            return i * np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out, np.float32)
        if coords == "asymmetric":
            return i / s
        if coords == "pytorch_half_pixel" and n_out == 1:
            return np.zeros(1, np.float32)
        x = (i + np.float32(0.5)) / s - np.float32(0.5)
        if coords == "half_pixel_symmetric":
            adjustment = np.float32(n_out / (s * n_in))
            x = x + np.float32(n_in / 2) * (np.float32(1) - adjustment)
        return x

    def along(x: torch.Tensor, a: int, n_out: int, scale: float) -> torch.Tensor:
        n_in = int(x.shape[a])  # sizes as numbers: a re-export fixes the resized axes' sizes
        pos = source(n_in, n_out, scale)
        if mode == "nearest":
            idx = np.clip(_NEAREST_MODES[rounding](pos), 0, n_in - 1).astype(np.int64)
            return torch.index_select(x, a, torch.from_numpy(idx))
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        shape = [1] * x.dim()
        shape[a] = n_out
        w = torch.from_numpy((pos - lo).astype(np.float32)).reshape(shape).to(x.dtype)
        return torch.lerp(torch.index_select(x, a, torch.from_numpy(lo)),
                          torch.index_select(x, a, torch.from_numpy(hi)), w)

    def fn(x: torch.Tensor, roi: Any = None, scales: Any = None, sizes: Any = None) -> torch.Tensor:
        axes = [int(a) % x.dim() for a in given_axes] if given_axes is not None else list(range(x.dim()))
        dims = [int(d) for d in x.shape]
        if sizes is not None and sizes.numel():
            outs = _ints(sizes)
            factors = [o / dims[a] for a, o in zip(axes, outs)]
        else:
            factors = [float(v) for v in scales.reshape(-1).tolist()]
            outs = [int(np.floor(dims[a] * np.float32(f))) for a, f in zip(axes, factors)]
        for a, n_out, f in zip(axes, outs, factors):
            if n_out != dims[a] or f != 1.0:
                x = along(x, a, n_out, f)
        return x
    return fn


def _upsample(attrs, node):
    """Upsample (opsets 7 to 9, before Resize): asymmetric coordinates, the nearest pixel below."""
    mode = {"bilinear": "linear"}.get(attrs.get("mode", "nearest"), attrs.get("mode", "nearest"))
    resize = _resize({"mode": mode, "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, node)
    given = attrs.get("scales")  # opset 7: an attribute; opset 9: the second input

    def fn(x: torch.Tensor, scales: Any = None) -> torch.Tensor:
        return resize(x, None, scales if scales is not None else torch.tensor(list(given), dtype=torch.float32))
    return fn


def _shape_op(attrs: dict[str, Any], node: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """ONNX Shape, with its start and end (opset 15; torch's dynamo exporter reads the batch with
    Shape(x, start=0, end=1)). Without them, no slice: a re-export traces one Shape node."""
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    if start == 0 and end is None:
        return _shape
    return lambda x: _shape(x)[start:None if end is None else int(end)]


def _simple(fn: Callable[..., Any]) -> Callable[[dict[str, Any], Any], Callable[..., Any]]:
    return lambda attrs, node: fn


SUPPORTED_OPS: dict[str, Callable[[dict[str, Any], Any], Callable[..., Any]]] = {
    "Identity": _simple(lambda x: x),
    "Dropout": lambda a, n: ((lambda x, *rest: x) if len(n.output) == 1
                             else (lambda x, *rest: (x, torch.ones_like(x, dtype=torch.bool)))),
    "Relu": _simple(F.relu),
    "Sigmoid": _simple(torch.sigmoid),
    "Tanh": _simple(torch.tanh),
    "Exp": _simple(torch.exp),
    "Sqrt": _simple(torch.sqrt),
    "Neg": _simple(torch.neg),
    "Erf": _simple(torch.erf),
    "Abs": _simple(torch.abs),
    "HardSwish": _simple(F.hardswish),
    "HardSigmoid": lambda a, n: (lambda x: torch.clamp(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)),
                                                       0.0, 1.0)),
    "LeakyRelu": lambda a, n: (lambda x: F.leaky_relu(x, float(a.get("alpha", 0.01)))),
    "Elu": lambda a, n: (lambda x: F.elu(x, float(a.get("alpha", 1.0)))),
    "Gelu": _gelu,
    "Clip": _clip,
    "Add": _simple(torch.add),
    "Sub": _simple(torch.sub),
    "Mul": _simple(torch.mul),
    "Div": _simple(lambda a, b: a / b if a.is_floating_point() or b.is_floating_point() else torch.div(
        a, b, rounding_mode="trunc")),
    "Pow": _simple(torch.pow),
    "Mod": _mod,
    "Equal": _simple(torch.eq),
    "Less": _simple(torch.lt),
    "Greater": _simple(torch.gt),
    "Not": _simple(torch.logical_not),
    "And": _simple(torch.logical_and),
    "Or": _simple(torch.logical_or),
    "Where": _simple(torch.where),
    "Min": _simple(lambda *xs: _fold(torch.minimum, xs)),
    "Max": _simple(lambda *xs: _fold(torch.maximum, xs)),
    "Einsum": _einsum,
    "LessOrEqual": _simple(torch.le),
    "GreaterOrEqual": _simple(torch.ge),
    "Xor": _simple(torch.logical_xor),
    "Sum": _simple(lambda *xs: _fold(torch.add, xs)),
    "Mean": _simple(lambda *xs: _fold(torch.add, xs) / len(xs)),
    "Sign": _simple(torch.sign),
    "Reciprocal": _simple(torch.reciprocal),
    "Floor": _simple(torch.floor),
    "Ceil": _simple(torch.ceil),
    "Round": _simple(torch.round),  # half to even, as ONNX
    "Log": _simple(torch.log),
    "Sin": _simple(torch.sin),
    "Cos": _simple(torch.cos),
    "Softplus": _simple(F.softplus),
    "Softsign": _simple(F.softsign),
    "Mish": _simple(F.mish),
    "Selu": _selu,
    "Celu": lambda a, n: (lambda x: F.celu(x, float(a.get("alpha", 1.0)))),
    "ThresholdedRelu": lambda a, n: (lambda x: torch.where(x > float(a.get("alpha", 1.0)), x, torch.zeros_like(x))),
    "PRelu": _simple(lambda x, slope: torch.where(x >= 0, x, x * slope)),
    "LRN": _lrn,
    "InstanceNormalization": _instance_norm,
    "Split": _split,
    "Tile": _simple(lambda x, repeats: x.repeat(_ints(repeats))),
    "CumSum": _cumsum,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "Size": _simple(lambda x: torch.tensor(x.numel(), dtype=torch.int64)),
    "MatMul": _simple(torch.matmul),
    "Flatten": lambda a, n: (lambda x: _flatten(x, int(a.get("axis", 1)))),
    "Reshape": _reshape,
    "Transpose": lambda a, n: (lambda x: x.permute(*(a["perm"] if "perm" in a else reversed(range(x.dim()))))),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Expand": _expand,
    "Range": _range,
    "GatherND": _gather_nd,
    "ScatterND": _scatter_nd,
    "Concat": lambda a, n: (lambda *xs: torch.cat(xs, dim=int(a["axis"]))),
    "Shape": _shape_op,
    "Gather": _gather,
    "Slice": _slice,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Pad": _pad,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _simple(lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)),
    "GlobalMaxPool": _simple(lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)),
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax),
    "ReduceMin": _reduce(torch.amin),
    "ReduceL2": _reduce(lambda x, dim, keepdim: torch.linalg.vector_norm(x, dim=dim, keepdim=keepdim)),
    "ReduceL1": _reduce(lambda x, dim, keepdim: x.abs().sum(dim=dim, keepdim=keepdim)),
    "ReduceSumSquare": _reduce(lambda x, dim, keepdim: (x * x).sum(dim=dim, keepdim=keepdim)),
    "ReduceLogSumExp": _reduce(torch.logsumexp),
    "ReduceProd": _reduce(_prod),
    "Softmax": lambda a, n: (lambda x: torch.softmax(x, dim=int(a.get("axis", -1)))),
    "LogSoftmax": lambda a, n: (lambda x: torch.log_softmax(x, dim=int(a.get("axis", -1)))),
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm,
    "ArgMax": _arg_extreme(True),
    "ArgMin": _arg_extreme(False),
    "TopK": _top_k,
    "Resize": _resize,
    "Upsample": _upsample,
    "Conv": lambda a, n: _unsupported_dynamic(n),
    "Gemm": lambda a, n: _unsupported_dynamic(n),
    "BatchNormalization": lambda a, n: _unsupported_dynamic(n),
}


def _fold(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], xs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


def _shape(x: torch.Tensor) -> torch.Tensor:
    """ONNX Shape: traced (a re-export keeps the batch open); under torch.func's vmap, which has
    no storage to read it from, the per-sample call's own shape."""
    try:
        return torch._shape_as_tensor(x)
    except RuntimeError:
        return torch.tensor(tuple(x.shape), dtype=torch.int64)


_RUNNING_BATCH: contextvars.ContextVar[tuple[int, torch.Tensor] | None] = contextvars.ContextVar(
    "onnx_running_batch", default=None)
"""(the file's fixed batch, the batch this call runs on) while a fixed-batch graph runs (per thread)."""


def _with_batch(x: torch.Tensor, dims: torch.Tensor, *, reshape: bool) -> torch.Tensor:
    """A fixed-batch file's constant target shape ``dims`` with the running batch n in place of
    the file's batch b where ``dims`` starts with b and ``x`` carries the images first: a Reshape
    whose input starts with n (and whose other sizes fit n images: ``[1, -1]`` on n×512 becomes
    ``[n, -1]``), or an Expand of a tensor whose first size is 1 or b, or that gains a first size
    (a class token expanded to ``[1, 1, 768]``). Other Reshapes stay as the file has them (a
    position embedding's to ``[1, 196, 768]``); a graph that still does not run on other batches is
    refused at import. While an
    export traces the graph, n is traced, so the written file keeps its batch open."""
    running = _RUNNING_BATCH.get()
    if running is None or not len(dims) or int(dims[0]) != running[0] or not x.dim():
        return dims
    b, n = running
    lead = int(x.shape[0]) if reshape or x.dim() == len(dims) else 1  # Expand: a new size in front is 1 in x
    if reshape:
        rest = [int(d) for d in dims[1:]]
        fits = -1 in rest or x.numel() == int(n) * math.prod(rest)
        if lead != int(n) or not fits:
            return dims
    elif lead not in (1, b):
        return dims
    return torch.cat([n.reshape(1).to(dims.dtype), dims[1:]])


def _flatten(x: torch.Tensor, axis: int) -> torch.Tensor:
    """ONNX Flatten: (prod of the dimensions before ``axis``, prod of the rest)."""
    axis %= x.dim() + 1
    if axis == 0:
        return x.reshape(1, -1)
    out = x.flatten(axis) if axis < x.dim() else x.unsqueeze(-1)
    return out.flatten(0, axis - 1)


def _unsupported_dynamic(node: Any) -> Callable[..., Any]:
    raise StudioError(f"ONNX node '{node.name or node.output[0]}' ({node.op_type}): its weights are computed in "
                      "the graph, not stored in it, so they cannot be pruned.", field="op_type", fix=_FIX)


# ---------------------------------------------------------------------------------------------
# reading the graph


def sort_nodes(graph: Any, path: str | None = None) -> None:
    """Put the graph's nodes in an order where each comes after the nodes whose outputs it reads,
    their file order kept where it already is one (Kahn's algorithm, earliest first). ONNX asks for
    that order, but onnxruntime runs files without it, and onnxconverter-common's float16
    converter with ``keep_io_types`` writes its input Casts last. A graph whose nodes read each
    other in a cycle, or read a name nothing gives, raises :class:`StudioError`."""
    import heapq

    nodes = list(graph.node)
    outside = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    outside |= {s.values.name for s in graph.sparse_initializer}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o and o not in outside}
    for node in nodes:
        missing = next((i for i in node.input if i and i not in producer and i not in outside), None)
        if missing is not None:
            raise StudioError(f"ONNX node '{node.name or node.output[0]}' ({node.op_type}) reads '{missing}', which no "
                              "node, initializer or graph input of the file gives.", path=path, field="graph.node",
                              fix="The file is incomplete or not valid ONNX; export the model again.")
    waiting, readers = [0] * len(nodes), [[] for _ in nodes]
    for k, node in enumerate(nodes):
        for d in {producer[i] for i in node.input if i in producer and producer[i] != k}:
            waiting[k] += 1
            readers[d].append(k)
    ready = [k for k, w in enumerate(waiting) if not w]
    order: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for r in readers[k]:
            waiting[r] -= 1
            if not waiting[r]:
                heapq.heappush(ready, r)
    if len(order) < len(nodes):
        stuck = next(nodes[k] for k, w in enumerate(waiting) if w)
        raise StudioError(f"The ONNX graph's nodes read each other's outputs in a cycle (at node "
                          f"'{stuck.name or stuck.output[0]}').", path=path, field="graph.node",
                          fix="Export the model again; a valid ONNX graph has no cycles.")
    if order != sorted(order):
        in_order = [nodes[k] for k in order]
        graph.ClearField("node")
        graph.node.extend(in_order)


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    from core.export import dense_array

    out = {t.name: _float32(numpy_helper.to_array(t)) for t in graph.initializer}
    for s in graph.sparse_initializer:
        out[s.values.name] = _float32(dense_array(s))
    return out


_FLOAT16 = 10  # TensorProto.FLOAT16
_FLOAT_CASTS = frozenset({1, 10, 11})  # Cast to FLOAT, FLOAT16, DOUBLE: folded on constants


def _float16_storage(graph: Any) -> bool:
    """Whether the graph stores weights in float16 only to compute in float32: it has float16
    initializers, and every node that reads one is a Cast to float32 (as
    :func:`core.export.float16_storage` writes)."""
    from onnx import TensorProto

    halves = {t.name for t in graph.initializer if t.data_type == TensorProto.FLOAT16}
    halves |= {s.values.name for s in graph.sparse_initializer if s.values.data_type == TensorProto.FLOAT16}
    if not halves:
        return False
    for node in graph.node:
        if any(i in halves for i in node.input):
            if node.op_type != "Cast" or _attributes(node).get("to") != TensorProto.FLOAT:
                return False
    return True


def _float16_weights(graph: Any) -> bool:
    """Whether most elements of the graph's float constants (initializers, sparse ones and
    Constant nodes' tensors) are stored in float16."""
    from onnx import AttributeProto, TensorProto

    tensors = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
    tensors += [a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                if a.type == AttributeProto.TENSOR]
    count = {TensorProto.FLOAT16: 0, TensorProto.FLOAT: 0, TensorProto.DOUBLE: 0}
    for t in tensors:
        if t.data_type in count:
            count[t.data_type] += math.prod(t.dims)
    return count[TensorProto.FLOAT16] > count[TensorProto.FLOAT] + count[TensorProto.DOUBLE]


def _float32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype in (np.float16, np.float64) else a


def _constant_value(node: Any, attrs: dict[str, Any]) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            return _float32(np.asarray(attrs[key]))
    raise StudioError(f"ONNX Constant node '{node.name}' has no value this importer reads.", field="op_type", fix=_FIX)


def _ends_in_softmax(graph: Any) -> bool:
    """Whether the graph's output is a Softmax's, reshaped or not."""
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(graph.output[0].name)
    while node is not None and node.op_type in ("Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if hasattr(value, "dims") and hasattr(value, "data_type"):  # a TensorProto
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        out[a.name] = value
    return out


def _input_shape(value_info: Any) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else 0 for d in dims][1:]
    return tuple(shape) if shape and all(s > 0 for s in shape) else ()


CHANNELS_LAST = (0, 2, 3, 1)
"""The permutation that turns an N×C×H×W batch into N×H×W×C."""


_ELEMENTWISE = frozenset({"Mul", "Add", "Sub", "Div", "Cast", "Identity", "Clip"})
"""Operators a channels-last input may pass (a Keras Rescaling or Normalization layer) before the
graph turns it channels first."""


def _takes_channels_last(graph: Any, value_info: Any) -> bool:
    """Whether the graph's 4-D input is N×H×W×C images: a grey one (C = 1, H and W not 1; tf2onnx
    turns it channels first with a Reshape, the same bytes), or one that every path through
    elementwise operators (``_ELEMENTWISE``) takes into a Transpose with perm 0,3,1,2, as
    tf2onnx's Keras convnets begin."""
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value_info.type.tensor_type.shape.dim]
    if len(dims) != 4:
        return False
    if dims[3] == 1 and dims[1] != 1 and dims[2] != 1:
        return True
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in set(node.input):
            readers.setdefault(name, []).append(node)
    found, todo, seen = False, [value_info.name], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in readers.get(name, []):
            if node.op_type == "Transpose" and list(_attributes(node).get("perm", ())) == [0, 3, 1, 2]:
                found = True
            elif node.op_type in _ELEMENTWISE:
                todo.extend(node.output)
            else:
                return False
    return found


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
