"""The Runs tab between sessions: each model-and-data pair's runs saved on close, given back
when the same weights and images are loaded again.

Files live beside the settings (``runs/<fingerprint>.pt``) and hold plain data only
(:mod:`core.result_io`), read with ``weights_only=True``. A file belongs to one model and one
evaluation set, named by :func:`core.result_io.fingerprint` of their contents, so a run is
never shown on weights or images it was not computed on. At most ``MAX_STORED_BYTES`` of
pruned weights are saved per pair (the most recent runs), and the ``MAX_FILES`` most recently
saved pairs are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from core.result_io import (
    eval_from_state,
    eval_state,
    fingerprint,
    load_states,
    result_from_state,
    result_state,
    save_states,
)
from gui.jobs import RunOutcome
from gui.runs_view import keep_recent

MAX_STORED_BYTES = 512 * 1024**2  # pruned weights saved per model-and-data pair, at most
MAX_FILES = 16  # pairs whose runs are kept on disk (the most recently saved)


def runs_folder(settings: Any) -> Path:
    """``runs/`` beside the settings file (tests point the settings at a temporary folder)."""
    return Path(settings.fileName()).parent / "runs"


def runs_key(model: torch.nn.Module, bundle: Any) -> str:
    """The fingerprint that names a model-and-data pair's file (weights and evaluation images)."""
    return fingerprint(model, bundle.evaluation.x, bundle.evaluation.y)


def _outcome_state(outcome: RunOutcome) -> dict[str, Any]:
    return {"result": result_state(outcome.result), "eval": eval_state(outcome.eval),
            "onnx_bytes": outcome.onnx_bytes, "compressed_bytes": outcome.compressed_bytes,
            "sparse_bytes": outcome.sparse_bytes, "sparse_compressed_bytes": outcome.sparse_compressed_bytes,
            "sizes_float16": bool(outcome.sizes_float16),
            "magnitude_sparsity": dict(outcome.magnitude_sparsity),
            "magnitude_eval": None if outcome.magnitude_eval is None else eval_state(outcome.magnitude_eval),
            "seconds": float(outcome.seconds), "from_sweep": bool(outcome.from_sweep)}


def _outcome_from_state(state: dict[str, Any]) -> RunOutcome:
    mag = state.get("magnitude_eval")
    return RunOutcome(result_from_state(state["result"]), eval_from_state(state["eval"]), state.get("onnx_bytes"),
                      state.get("compressed_bytes"), dict(state.get("magnitude_sparsity") or {}),
                      None if mag is None else eval_from_state(mag), float(state.get("seconds", 0.0)),
                      bool(state.get("from_sweep", False)), restored=True,
                      sparse_bytes=state.get("sparse_bytes"),  # absent from files saved before they existed
                      sparse_compressed_bytes=state.get("sparse_compressed_bytes"),
                      sizes_float16=bool(state.get("sizes_float16", False)))


def save_runs(folder: Path, key: str, runs: Sequence[RunOutcome]) -> int:
    """Save the most recent ``runs`` that fit ``MAX_STORED_BYTES`` under ``key`` (none: the
    file is removed); returns how many were saved. Older pairs beyond ``MAX_FILES`` are removed."""
    path = folder / f"{key}.pt"
    kept = keep_recent(list(runs), max_bytes=MAX_STORED_BYTES) if runs else []
    if not kept:
        path.unlink(missing_ok=True)
        return 0
    save_states(path, {"key": key, "runs": [_outcome_state(r) for r in kept]})
    files = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[MAX_FILES:]:
        old.unlink(missing_ok=True)
    return len(kept)


def load_runs(folder: Path, key: str) -> list[RunOutcome]:
    """The runs saved under ``key`` (oldest first), or [] where none were. Raises StudioError
    (naming the file) when the file is unreadable."""
    path = folder / f"{key}.pt"
    if not path.is_file():
        return []
    payload = load_states(path)
    if payload.get("key") != key:
        return []
    return [_outcome_from_state(s) for s in payload.get("runs", [])]


def restore_job(model: torch.nn.Module, bundle: Any, folder: str, *, progress: Any = None,
                cancel: Any = None) -> tuple[str, list[RunOutcome]]:
    """(fingerprint, the runs saved for this model and data): a background job at model load."""
    key = runs_key(model, bundle)
    return key, load_runs(Path(folder), key)
