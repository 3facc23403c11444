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
