"""Pruning results on disk: written atomically, read back without running any code.

A file holds plain data only (dicts, lists, numbers, strings and tensors), so it loads with
``torch.load(..., weights_only=True)``: a results file someone hands you cannot execute code.
:func:`result_state` / :func:`result_from_state` turn a :class:`core.pruning.PruneResult`
into that plain data and back, :func:`eval_state` / :func:`eval_from_state` an
:class:`core.evaluate.EvalResult` (with its per-image hits, for paired comparisons).
:func:`fingerprint` names a model and an image set by their contents, so that results are
only ever given back to the weights and images they were computed on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from core.errors import StudioError
from core.evaluate import EvalResult
from core.pruning import PruneRequest, PruneResult

FORMAT = 1  # bumped when the layout below changes; other formats are refused, not guessed at


def _plain(value: Any) -> Any:
    """``value`` with only what a weights-only load accepts (tensors detached to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if isinstance(k, (str, int, float, bool))}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    return repr(value)  # anything else is kept as text, never as an object


def result_state(result: PruneResult) -> dict[str, Any]:
    """A PruneResult as plain data (:func:`result_from_state` gives it back)."""
    return {
        "request": _plain(dataclasses.asdict(result.request)),
        "weights": _plain(dict(result.weights)), "masks": _plain(dict(result.masks)),
        "layer_sparsity": dict(result.layer_sparsity), "nonzeros": int(result.nonzeros),
        "total": int(result.total), "objective_trace": list(result.objective_trace),
        "timings": dict(result.timings), "lam": result.lam, "buffers": _plain(dict(result.buffers)),
        "info": _plain(dict(result.info)),
    }


def result_from_state(state: Mapping[str, Any]) -> PruneResult:
    """The PruneResult of :func:`result_state` (request fields this version lacks are dropped,
    those the file lacks take their defaults)."""
    names = {f.name for f in dataclasses.fields(PruneRequest)}
    req = {k: v for k, v in state["request"].items() if k in names}
    if isinstance(req.get("layers"), list):
        req["layers"] = tuple(req["layers"])
    return PruneResult(
        request=PruneRequest(**req), weights=dict(state["weights"]), masks=dict(state["masks"]),
        layer_sparsity=dict(state["layer_sparsity"]), nonzeros=int(state["nonzeros"]),
        total=int(state["total"]), objective_trace=tuple(state["objective_trace"]),
        timings=dict(state["timings"]), lam=state["lam"], buffers=dict(state["buffers"]),
        info=dict(state["info"]))


def eval_state(ev: EvalResult) -> dict[str, Any]:
    """An EvalResult as plain data, its per-image hits included."""
    return _plain(dataclasses.asdict(ev) | {"hits": ev.hits, "predictions": ev.predictions,
                                            "top_classes": ev.top_classes, "top_probabilities": ev.top_probabilities})


def eval_from_state(state: Mapping[str, Any]) -> EvalResult:
    """The EvalResult of :func:`eval_state`."""
    return EvalResult(accuracy=float(state["accuracy"]), accuracy_ci=tuple(state["accuracy_ci"]),
                      loss=float(state["loss"]), loss_ci=tuple(state["loss_ci"]), n=int(state["n"]),
                      correct=int(state["correct"]), seconds=float(state["seconds"]), hits=state.get("hits"),
                      predictions=state.get("predictions"), top_classes=state.get("top_classes"),
                      top_probabilities=state.get("top_probabilities"))


def fingerprint(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-1 of a model's parameters and buffers (names and values) and of an image set: equal
    only for the same weights and the same images in the same order."""
    h = hashlib.sha1()

    def add(t: torch.Tensor) -> None:  # the tensor's own memory, not a copy of it
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else b"")

    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            add(t)
    add(x)
    add(y)
    return h.hexdigest()


def save_states(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` (plain data) to ``path`` atomically: a temporary file beside it, then
    a rename, so a crash leaves the previous file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        torch.save({"format": FORMAT, **_plain(dict(payload))}, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_states(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file of :func:`save_states` without running code (``weights_only=True``).
    Raises StudioError naming the file when it is unreadable or of another format."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise StudioError(f"{path} is not a results file this version can read ({type(exc).__name__}: {exc})",
                          field="file", fix="delete it; results are saved again on the next close.") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise StudioError(f"{path} has results format {got!r}, not {FORMAT}", field="format",
                          fix="delete it; results are saved again on the next close.")
    return payload
