"""The pruned network's weights as a PyTorch state_dict file, for fine-tuning after pruning.

ONNX is what ships; a state_dict is what training code takes. :func:`save_weights` writes the
whole state_dict of a (pruned) model, parameters and buffers (BatchNorm's recalibrated
statistics included), as ``.safetensors`` (Hugging Face's format: tensors and string metadata,
no code) or ``.pt`` / ``.pth`` (``torch.save`` of a dict of tensors, which ``torch.load(...,
weights_only=True)`` reads). Pruned weights are exact zeros: training code recovers the masks
as ``weight != 0``. The file is written atomically and read back before it appears: every tensor
must come back bit for bit (:func:`core.export.write_verified`).
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from core.errors import StudioError
from core.export import write_verified

SUFFIXES = (".safetensors", ".pt", ".pth")
"""File name endings :func:`save_weights` writes (.safetensors, or torch.save's)."""


@dataclass(frozen=True)
class WeightsReport:
    """What :func:`save_weights` wrote."""

    path: str
    bytes: int
    tensors: int
    zeros: int  # elements that are exactly zero, over every floating-point tensor
    elements: int  # elements of every floating-point tensor
    format: str  # "safetensors" or "torch"
    seconds: float


def save_weights(model: torch.nn.Module, path: str | os.PathLike, *,
                 metadata: Mapping[str, str] | None = None) -> WeightsReport:
    """Write ``model``'s state_dict to ``path`` (a ``SUFFIXES`` name) atomically, verified by
    reading it back; ``metadata`` (strings) goes into a .safetensors header (and is ignored for
    .pt). The model is not modified. Raises :class:`StudioError` naming the file for a name
    without a known ending, a folder that cannot take it, or a file that does not read back."""
    start = time.perf_counter()
    target = os.path.abspath(os.fspath(path))
    suffix = os.path.splitext(target)[1].lower()
    if suffix not in SUFFIXES:
        raise StudioError(f"cannot tell which format to write from the name's ending '{suffix or '(none)'}'",
                          path=target, field="file name",
                          fix="end the name in .safetensors (no code in the file) or .pt")
    # a copy of each tensor, contiguous and unshared (safetensors refuses tensors sharing memory)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
             if isinstance(v, torch.Tensor)}
    if suffix == ".safetensors":
        from safetensors.torch import save

        data, fmt = save(state, metadata={str(k): str(v) for k, v in (metadata or {}).items()}), "safetensors"
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data, fmt = buffer.getvalue(), "torch"

    def verify(tmp: str) -> None:
        back = _read(tmp, fmt)
        bad = [k for k, v in state.items()
               if k not in back or back[k].dtype != v.dtype or back[k].shape != v.shape
               or not torch.equal(back[k].view(-1).view(torch.uint8), v.view(-1).view(torch.uint8))]
        if bad or set(back) != set(state):
            raise StudioError(f"the weights file did not read back as written ({', '.join(bad[:3]) or 'other keys'}); "
                              "nothing was saved", path=target, fix="free some disk space, or choose another folder")

    write_verified(target, data, verify, what="the weights file")
    floats = [v for v in state.values() if v.is_floating_point()]
    return WeightsReport(path=target, bytes=len(data), tensors=len(state),
                         zeros=sum(int((v == 0).sum()) for v in floats), elements=sum(v.numel() for v in floats),
                         format=fmt, seconds=time.perf_counter() - start)


def pruned_metadata(source: str, arch: str | None, result: Any) -> dict[str, str]:
    """What a pruned weights file says about itself (its .safetensors header): the model it
    came from, its architecture, the method, the sparsity and the nonzeros of a PruneResult."""
    return {"source": str(source), "arch": str(arch or ""), "method": result.request.method,
            "sparsity": f"{result.sparsity:.6f}", "nonzeros": str(result.nonzeros), "written_by": "CHITA Studio"}


def _read(path: str, fmt: str) -> dict[str, torch.Tensor]:
    if fmt == "safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)
