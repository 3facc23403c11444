"""ONNX files for the tests: helpers shared by the import, CLI and GUI tests."""

from __future__ import annotations

from pathlib import Path

import onnx


def anonymous(src: Path, dst: Path) -> Path:
    """``src`` saved as ``dst`` with every initializer renamed w0, w1, …: weights no known
    architecture has, so that the graph itself is run when it is opened."""
    proto = onnx.load(str(src))
    names = {t.name: f"w{i}" for i, t in enumerate(proto.graph.initializer)}
    for t in proto.graph.initializer:
        t.name = names[t.name]
    for node in proto.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
    onnx.save(proto, str(dst))
    return dst


def renamed_io(src: Path, dst: Path, input_name: str, output_name: str,
               metadata: dict[str, str] | None = None) -> Path:
    """``src`` saved as ``dst`` with its graph input and output renamed (as other exporters name
    them) and ``metadata`` added to its metadata_props."""
    proto = onnx.load(str(src))
    old_in, old_out = proto.graph.input[0].name, proto.graph.output[0].name
    proto.graph.input[0].name, proto.graph.output[0].name = input_name, output_name
    swap = {old_in: input_name, old_out: output_name}
    for node in proto.graph.node:
        node.input[:] = [swap.get(i, i) for i in node.input]
        node.output[:] = [swap.get(o, o) for o in node.output]
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(dst))
    return dst


def float16_copy(src: Path, dst: Path) -> Path:
    """``src`` saved as ``dst`` in float16: its float weights, inputs and outputs (as a converter
    for GPU inference writes a file without keeping float32 inputs and outputs)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    proto = onnx.load(str(src))
    for i, t in enumerate(proto.graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(a.astype(np.float16), t.name))
    for v in (*proto.graph.input, *proto.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    del proto.graph.value_info[:]
    onnx.save(proto, str(dst))
    return dst


def converted_float16(src: Path, dst: Path, *, keep_io_types: bool) -> Path:
    """``src`` saved as ``dst`` by onnxruntime's float16 converter (onnxconverter-common's, as
    deployments run it): float16 weights and arithmetic; with ``keep_io_types`` float32 inputs and
    outputs with Casts inside (a mixed-precision file), else float16 ones."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=keep_io_types), str(dst))
    return dst
