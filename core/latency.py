"""How long onnxruntime takes to run ONNX files on this machine's CPU: the speed a pruned file ships with.

Unstructured zeros do not make onnxruntime's CPU kernels faster: its dense Conv and Gemm kernels
multiply a zero like any other weight, and sparse initializers (``--sparse-storage``) are expanded
to dense tensors when a session loads the file. A pruned file is therefore expected to run at its
dense model's speed. This module measures that instead of assuming it.

Several files are timed in alternating rounds on the same input batch (file A, file B, A, B, …),
so that a slow stretch of a busy machine falls on all of them alike; each file's figure is the
median over all its runs, with the interquartile range. Every session gets the same options
(onnxruntime's default thread count, all graph optimisations), so the ratio between files is
fair.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from core.progress import CancelToken, ProgressFn, check, report

WARMUP_RUNS = 3  # untimed runs per session before the first round (allocations, kernel choice)


@dataclass(frozen=True)
class Latency:
    """One file's time per run on a batch of ``batch`` images, in milliseconds: the median of
    ``runs`` timed runs and their interquartile range (``q1_ms``, ``q3_ms``)."""

    batch: int
    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int

    @property
    def per_image_ms(self) -> float:
        """The median time divided by the batch size."""
        return self.median_ms / self.batch

    def describe(self) -> str:
        """'0.84 ms per batch of 1 (interquartile 0.82–0.87 ms, 600 runs)'."""
        return (f"{self.median_ms:.3g} ms per batch of {self.batch} (interquartile "
                f"{self.q1_ms:.3g}–{self.q3_ms:.3g} ms, {self.runs:,} runs)")


def measure_latency(files: Sequence[str | os.PathLike | bytes], images: torch.Tensor, *,
                    budget_s: float = 2.0, rounds: int = 5, max_runs: int = 2000,
                    progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> list[Latency]:
    """Time each ONNX file (a path, or the serialised model) in onnxruntime on ``images`` (a
    batch, N×C×H×W float32 as the app gives them; each file is fed as
    :class:`core.export.OnnxRuntimeModel` feeds it), in ``rounds`` alternating rounds that share
    about ``budget_s`` seconds. Returns one :class:`Latency` per file, in order.

    Reports stage ``"latency"`` once per round; ``Cancelled`` is raised between runs.
    """
    from core.export import OnnxRuntimeModel

    if not files:
        return []
    x = images.detach().cpu().float()
    sessions = [OnnxRuntimeModel(f) for f in files]
    for s in sessions:
        for _ in range(WARMUP_RUNS):
            s(x)
        check(cancel)
    # runs per round from one timed run of each: about budget_s over all rounds and files
    t0 = time.perf_counter()
    for s in sessions:
        s(x)
    one = max(1e-6, (time.perf_counter() - t0) / len(sessions))
    per_round = max(1, min(max_runs // max(1, rounds), int(budget_s / (rounds * len(sessions) * one))))
    times: list[list[float]] = [[] for _ in sessions]
    for r in range(rounds):
        report(progress, "latency", r, rounds, f"round {r + 1} of {rounds}")
        for s, out in zip(sessions, times):
            for _ in range(per_round):
                check(cancel)
                start = time.perf_counter()
                s(x)
                out.append(1000.0 * (time.perf_counter() - start))
    report(progress, "latency", rounds, rounds)
    result = []
    for t in times:
        q1, med, q3 = statistics.quantiles(t, n=4) if len(t) > 1 else (t[0], t[0], t[0])
        result.append(Latency(int(x.shape[0]), med, q1, q3, len(t)))
    return result
