"""Per-sample gradients and BatchNorm check decisions kept between runs on the same model.

The GUI prunes one model at many sparsities; a run at a new sparsity on the same model, images
and sample reuses the last run's G instead of computing it again (:class:`GradientCache`).
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn as nn


class GradientCache:
    """The dense starting point and per-sample gradients of the last run, for the next run on
    the same model, calibration images and sample (the GUI's runs at other sparsities).

    A hit skips the gradient pass and the BatchNorm refresh check and gives the same result as
    a fresh run. One entry only (G is large); CHITA++ and magnitude runs do not use it, and a
    run on another model, data or sample replaces it. Beside it, a few BatchNorm refresh-check
    decisions are kept for every method (:meth:`check_get`): the GUI's live magnitude previews
    and magnitude baselines skip the check after the first. The model and the images are held by
    weak reference, and any in-place change to the model's parameters (their version counters;
    for check decisions, its buffers' too) is a miss. Thread-safe.
    """

    CHECKS_KEPT = 4  # refresh-check decisions kept (the GUI's run and preview copies, other samples)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (model ref, images ref, versions, key, base, A, fbar, info, derived)
        self._entry: tuple | None = None
        self.hits = 0
        # BatchNorm refresh-check decisions, any method: (id(model), id(images), key) ->
        # (model ref, images ref, versions, info, refreshed buffers or None); oldest first
        self._checks: dict[tuple, tuple] = {}
        self.check_hits = 0

    def clear(self) -> None:
        """Drop the kept gradients (frees their memory). Refresh-check decisions, a few
        BatchNorm buffers each, stay: they are keyed by their model and go with it."""
        with self._lock:
            self._entry = None

    @staticmethod
    def _state_versions(model: nn.Module) -> tuple[int, ...]:
        return tuple(t._version for t in (*model.parameters(), *model.buffers()))

    def check_get(self, model: nn.Module, images: torch.Tensor, key: tuple
                  ) -> tuple[dict, dict[str, torch.Tensor] | None] | None:
        """(what the refresh check recorded, the buffers of its refresh or None) for exactly this
        model (parameters and buffers unchanged), images and key, or None."""
        with self._lock:
            e = self._checks.get((id(model), id(images), key))
            if (e is None or e[0]() is not model or e[1]() is not images
                    or e[2] != self._state_versions(model)):
                return None
            self.check_hits += 1
            return dict(e[3]), e[4]

    def check_put(self, model: nn.Module, images: torch.Tensor, key: tuple, info: dict,
                  buffers: dict[str, torch.Tensor] | None) -> None:
        """Keep one refresh-check decision (the oldest of ``CHECKS_KEPT`` goes)."""
        with self._lock:
            self._checks = {k: e for k, e in self._checks.items()
                            if e[0]() is not None and e[1]() is not None}  # dead models go
            self._checks.pop((id(model), id(images), key), None)
            self._checks[(id(model), id(images), key)] = (
                weakref.ref(model), weakref.ref(images), self._state_versions(model), dict(info), buffers)
            while len(self._checks) > self.CHECKS_KEPT:
                self._checks.pop(next(iter(self._checks)))

    @staticmethod
    def _versions(model: nn.Module) -> tuple[int, ...]:
        return tuple(p._version for p in model.parameters())

    def get(self, model: nn.Module, images: torch.Tensor, key: tuple):
        """(base, A, fbar, info, derived) kept for exactly this model, images and key, or None.

        ``derived`` is a dict for what later runs compute from G (WoodFisher's AAᵀ and inverse
        Fisher diagonals), kept with it."""
        with self._lock:
            e = self._entry
            if e is not None and e[0]() is None:  # its model is gone: free its gradients
                self._entry = e = None
            if (e is None or e[0]() is not model or e[1]() is not images or e[3] != key
                    or e[2] != self._versions(model)):
                return None
            self.hits += 1
            return e[4:]

    def put(self, model: nn.Module, images: torch.Tensor, key: tuple, base: nn.Module,
            A: torch.Tensor, fbar: float, info: dict) -> dict:
        """Keep this run's base model and gradients (replacing any previous entry); returns the
        entry's (empty) ``derived`` dict."""
        derived: dict = {}
        with self._lock:
            self._entry = (weakref.ref(model), weakref.ref(images), self._versions(model), key,
                           base, A, fbar, dict(info), derived)
        return derived
