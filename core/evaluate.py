"""Top-1 accuracy and cross-entropy loss of a classifier, each with a 95% interval.

Accuracy carries a Wilson score interval (honest for small test sets and for accuracies near
0 or 1); the mean loss carries a normal-approximation interval, mean ± z·sd/√n.

Two models scored on the same images are compared with :func:`paired_difference`: the change in
accuracy with a 95% interval for matched pairs (Agresti & Min, 2005). It is much narrower than
the two Wilson intervals side by side, because most images are right (or wrong) for both.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F

from core.errors import StudioError
from core.progress import CancelToken, ProgressFn, check, report

if TYPE_CHECKING:
    from core.data import ImageSet

Z_95 = 1.96
TOP_K = 3  # most probable classes kept per image (EvalResult.top_classes)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and loss of a model on an image set.

    ``accuracy`` and ``accuracy_ci`` are fractions in [0, 1] (multiply by 100 for percent);
    ``loss`` is the mean cross-entropy in nats; both intervals are 95%. ``hits`` (bool, one per
    image, in the image set's order) says which images were classified right: what
    :func:`paired_difference` needs to compare two models on the same images. ``predictions``
    (int32, one per image) are the predicted classes: where the images a pruned model gets
    wrong went (:func:`core.class_accuracy.class_scores`). ``top_classes`` (int32) and
    ``top_probabilities`` (float32), (n, ``TOP_K``), are each image's most probable classes and
    their softmax probabilities, most probable first: how sure the network was.
    """

    accuracy: float
    accuracy_ci: tuple[float, float]
    loss: float
    loss_ci: tuple[float, float]
    n: int
    correct: int
    seconds: float
    hits: torch.Tensor | None = field(default=None, compare=False, repr=False)
    predictions: torch.Tensor | None = field(default=None, compare=False, repr=False)
    top_classes: torch.Tensor | None = field(default=None, compare=False, repr=False)
    top_probabilities: torch.Tensor | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of a model *a* minus that of *b* on the same n images, with a 95% interval.

    ``difference`` and ``ci`` are fractions (×100 for points); ``a_only`` counts the images
    only *a* gets right, ``b_only`` those only *b* gets right: the difference is their
    difference over n, and only these discordant images carry information about it.
    """

    difference: float
    ci: tuple[float, float]
    n: int
    a_only: int
    b_only: int

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly above or wholly below 0."""
        return self.ci[0] > 0.0 or self.ci[1] < 0.0

    def describe(self, versus: str = "", digits: int = 2) -> str:
        """'-1.23 points against dense (95% interval -1.80 to -0.61; 12 images better, 33 worse)'."""
        lo, hi = self.ci
        against = f" against {versus}" if versus else ""
        return (f"{100 * self.difference:+.{digits}f} points{against} (95% interval {100 * lo:+.{digits}f} "
                f"to {100 * hi:+.{digits}f}; {self.a_only:,} image{'' if self.a_only == 1 else 's'} better, "
                f"{self.b_only:,} worse)")


def paired_interval(a_only: int, b_only: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% interval for a difference of matched proportions: Agresti & Min's adjusted Wald
    ("Wald+2", Statistics in Medicine 24:729–740, 2005).

    Add ½ to each cell of the 2×2 table of (a right?, b right?) and take the Wald interval:
    centre (a_only − b_only)/(n + 2), standard error √((a_only + b_only + 1) −
    (a_only − b_only)²/(n + 2)) / (n + 2), clipped to [−1, 1].
    """
    if n <= 0:
        return (-1.0, 1.0)
    if a_only < 0 or b_only < 0 or a_only + b_only > n:
        raise ValueError(f"discordant counts {a_only} + {b_only} do not fit in {n} pairs")
    m = n + 2.0
    centre = (a_only - b_only) / m
    se = math.sqrt(max(0.0, (a_only + b_only + 1) - (a_only - b_only) ** 2 / m)) / m
    return (max(-1.0, centre - z * se), min(1.0, centre + z * se))


def paired_or_none(a: EvalResult | None, b: EvalResult | None) -> PairedDifference | None:
    """:func:`paired_difference`, or None when either result is missing, lacks per-image hits,
    or was scored on other images (what a view shows as "–")."""
    if a is None or b is None or a.hits is None or b.hits is None or a.hits.shape != b.hits.shape:
        return None
    return paired_difference(a, b)


def agreement(a: EvalResult | None, b: EvalResult | None) -> float | None:
    """The fraction of images two models scored on the same images give the same class, or None
    where either result lacks its predictions (or they were scored on other images)."""
    if a is None or b is None or a.predictions is None or b.predictions is None \
            or a.predictions.shape != b.predictions.shape:
        return None
    return float((a.predictions == b.predictions).float().mean())


def paired_difference(a: EvalResult, b: EvalResult) -> PairedDifference:
    """Accuracy of ``a`` minus accuracy of ``b``, both scored by :func:`evaluate` on the same
    images, with the matched-pairs interval of :func:`paired_interval`."""
    if a.hits is None or b.hits is None:
        raise ValueError("both results need per-image hits (scored by core.evaluate.evaluate)")
    if a.hits.shape != b.hits.shape:
        raise ValueError(f"the results were scored on different image sets ({a.n} and {b.n} images)")
    ha, hb = a.hits.bool(), b.hits.bool()
    a_only = int((ha & ~hb).sum())
    b_only = int((hb & ~ha).sum())
    n = int(ha.numel())
    return PairedDifference((a_only - b_only) / max(1, n), paired_interval(a_only, b_only, n),
                            n, a_only, b_only)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``; ``(0, 1)`` when n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]; got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def _logits(output: object) -> torch.Tensor:
    """The logits tensor of a model output (first element of a tuple/list, or ``logits`` of a dict)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = output.get("logits", next(iter(output.values()), None))
        return _logits(output)
    if isinstance(output, (tuple, list)) and output:
        return _logits(output[0])
    raise StudioError(
        f"the model returned {type(output).__name__}, not a tensor of class scores",
        fix="evaluate a classifier whose forward() returns logits of shape (batch, classes)",
    )


PROBABILITY_FLOOR = 1e-30
"""Probabilities are clamped here before their log (a float32 softmax can underflow to 0)."""


def as_logits(model: torch.nn.Module, output: object) -> torch.Tensor:
    """The class scores of ``model``'s ``output`` as logits for the cross-entropy: its logits, or,
    for a model whose ``outputs_probabilities`` is set (an ONNX graph that ends in Softmax), the
    log of its probabilities, whose cross-entropy is exactly −log p_y (logsumexp of log p is 0)."""
    scores = _logits(output)
    if getattr(model, "outputs_probabilities", False):
        return torch.log(scores.clamp_min(PROBABILITY_FLOOR))
    return scores


FORWARD_CHUNK = 32  # images per forward call of an eval-mode pass on the CPU (benchmarks/forward_chunk.py)


def forward_in_chunks(model: torch.nn.Module, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """The logits (:func:`as_logits`) of ``model`` (in eval mode) on the images ``x``, ``chunk`` (default
    ``FORWARD_CHUNK``) images per call on the CPU.

    In eval mode each image is scored on its own, so the logits are those of one call on all of
    ``x``: equal to the bit on the shared ResNet20 and MLPNet. Calls on a few images keep each
    layer's activations in the CPU's caches: a held-out pass of ResNet20 (batches of 128) takes
    0.85× the time in chunks of 32 on the 2-core machine this was measured on. Other devices get
    one call."""
    chunk = chunk or FORWARD_CHUNK
    if x.device.type != "cpu" or len(x) <= chunk:
        return as_logits(model, model(x))
    return torch.cat([as_logits(model, model(x[i:i + chunk])) for i in range(0, len(x), chunk)])


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def set_eval_mode(model: torch.nn.Module) -> bool:
    """Put ``model`` in eval mode; return its previous ``training`` flag (to restore with ``.train``)."""
    was_training = bool(getattr(model, "training", False))
    try:
        model.eval()
    except NotImplementedError:  # modules from torch.export cannot switch modes; they are eval already
        pass
    return was_training


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run a block with every module in eval mode, then restore each module's own flag
    (a train-mode model with frozen BatchNorm comes back exactly as it was)."""
    flags = [(m, m.training) for m in model.modules()]
    set_eval_mode(model)
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def restore_mode(model: torch.nn.Module, was_training: bool) -> None:
    """Undo :func:`set_eval_mode`."""
    if was_training:
        try:
            model.train(True)
        except NotImplementedError:
            pass


def evaluate(
    model: torch.nn.Module,
    images: ImageSet,
    *,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> EvalResult:
    """Top-1 accuracy (Wilson 95% interval) and mean cross-entropy (normal 95% interval).

    ``images`` is an :class:`core.data.ImageSet` (``x`` normalised float, ``y`` int64 labels).
    The model runs in eval mode without gradients; its previous training flag is restored.
    Reports stage ``"evaluate"`` once per batch and raises ``Cancelled`` between batches.
    """
    x, y = images.x, images.y
    n = int(y.shape[0])
    if n == 0 or int(x.shape[0]) != n:
        raise StudioError(
            f"cannot evaluate on {int(x.shape[0])} images with {n} labels",
            path=getattr(images, "source", None),
            fix="choose a data set with at least one labelled image",
        )
    batch_size = max(1, int(batch_size))
    device = _model_device(model)
    start = time.perf_counter()
    correct = 0
    hits = torch.zeros(n, dtype=torch.bool)
    predictions = torch.zeros(n, dtype=torch.int32)
    top_classes: torch.Tensor | None = None
    top_probabilities: torch.Tensor | None = None
    loss_sum = 0.0
    loss_sq_sum = 0.0
    was_training = set_eval_mode(model)
    try:
        report(progress, "evaluate", 0, n)
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                check(cancel)
                xb = x[lo : lo + batch_size].to(device)
                yb = y[lo : lo + batch_size].to(device)
                try:
                    logits = forward_in_chunks(model, xb)
                except RuntimeError as err:
                    raise StudioError(
                        f"the model failed on a batch of images of shape {tuple(xb.shape)}: "
                        f"{str(err).splitlines()[0]}",
                        path=getattr(images, "source", None),
                        fix="check that the data preset and input shape match the model",
                    ) from None
                if logits.dim() != 2 or logits.shape[0] != yb.shape[0]:
                    raise StudioError(
                        f"the model output has shape {tuple(logits.shape)}; expected (batch, classes)",
                        fix="evaluate a classifier that returns one row of class scores per image",
                    )
                if int(yb.max()) >= logits.shape[1] or int(yb.min()) < 0:
                    raise StudioError(
                        f"a label is {int(yb.max())} but the model has only {logits.shape[1]} classes",
                        path=getattr(images, "source", None),
                        fix="use a data set with the same classes as the model",
                    )
                logits = logits.float()
                losses = F.cross_entropy(logits, yb, reduction="none").double()
                loss_sum += float(losses.sum())
                loss_sq_sum += float((losses * losses).sum())
                predicted = logits.argmax(dim=1)
                right = (predicted == yb).cpu()
                hits[lo : lo + len(right)] = right
                predictions[lo : lo + len(right)] = predicted.cpu().to(torch.int32)
                top = logits.softmax(dim=1).topk(min(TOP_K, logits.shape[1]), dim=1)
                if top_classes is None:
                    top_classes = torch.zeros(n, top.indices.shape[1], dtype=torch.int32)
                    top_probabilities = torch.zeros(n, top.indices.shape[1], dtype=torch.float32)
                top_classes[lo : lo + len(right)] = top.indices.cpu().to(torch.int32)
                top_probabilities[lo : lo + len(right)] = top.values.cpu()
                correct += int(right.sum())
                report(progress, "evaluate", min(lo + batch_size, n), n)
    finally:
        restore_mode(model, was_training)

    mean = loss_sum / n
    var = max(0.0, (loss_sq_sum - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    half = Z_95 * math.sqrt(var / n)
    return EvalResult(
        accuracy=correct / n,
        accuracy_ci=wilson_interval(correct, n),
        loss=mean,
        loss_ci=(mean - half, mean + half),
        n=n,
        correct=correct,
        seconds=time.perf_counter() - start,
        hits=hits,
        predictions=predictions,
        top_classes=top_classes,
        top_probabilities=top_probabilities,
    )
