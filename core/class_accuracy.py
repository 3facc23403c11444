"""Accuracy per class, and which classes pruning cost.

One accuracy over all images can hide a class that a pruned network gave up: a drop of 2 points
overall may be 15 points on one class and none on the rest. Each class's images are scored
apart here, with the same statistics as the whole set (:mod:`core.evaluate`):

- accuracy on class c, ``correct_c / n_c``, with its Wilson 95% interval;
- against a reference (the dense model) on the same images, the paired change on class c's
  images with Agresti & Min's matched-pairs interval (:func:`core.evaluate.paired_interval`).

With C classes, C intervals at 95% each leave room for chance: with ten classes and nothing
changed, up to four runs in ten (1 − 0.95¹⁰) would show at least one interval that excludes 0
(three in ten in the simulation of tests/test_class_accuracy.py). A change is
called *clear* only when its interval at the Bonferroni level (1 − 0.05 / C, each side 0.025 / C)
excludes 0, which bounds the chance of any false call at 5% over all C classes together.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import torch

from core.data import class_name
from core.evaluate import EvalResult, PairedDifference, paired_interval, wilson_interval

LEVEL = 0.05  # family-wise error rate over all classes for a "clear" change


@dataclass(frozen=True)
class ClassScore:
    """One class on the evaluation images: its accuracy and, against a reference, its change.

    ``accuracy`` and the intervals are fractions (×100 for percent / points); ``change`` is this
    model's accuracy on the class minus the reference's, paired on the class's ``n`` images;
    ``clear`` says whether it excludes 0 at the Bonferroni level for all classes compared;
    ``lost_to`` names the classes this model now gives the images it lost (right for the
    reference, wrong here), with how many each, where the results carry their predictions.
    """

    label: int
    name: str
    n: int
    correct: int
    accuracy: float
    ci: tuple[float, float]
    reference_accuracy: float | None = None
    change: PairedDifference | None = None
    clear: bool = False
    lost_to: tuple[tuple[str, int], ...] = ()  # where its lost images went: (class, images), most first


LOST_TO = 3  # destinations kept per class in ClassScore.lost_to


def _lost_to(result: EvalResult, ref: torch.Tensor, hits: torch.Tensor, y: torch.Tensor
             ) -> dict[int, list[tuple[int, int]]]:
    """Per class, the classes ``result`` predicts for the images it lost (``ref`` right, ``hits``
    wrong), most first, at most ``LOST_TO``: {} without predictions."""
    pred = result.predictions
    if pred is None or pred.numel() != y.numel():
        return {}
    lost = ref & ~hits
    if not bool(lost.any()):
        return {}
    yl, pl = y[lost], pred.reshape(-1)[lost].long()
    width = int(max(int(yl.max()), int(pl.max()))) + 1
    counts = torch.bincount(yl * width + pl, minlength=width * width).reshape(width, width)
    top = torch.topk(counts, min(LOST_TO, width), dim=1)
    out: dict[int, list[tuple[int, int]]] = {}
    for c in torch.unique(yl).tolist():
        out[c] = [(d, k) for d, k in zip(top.indices[c].tolist(), top.values[c].tolist()) if k > 0]
    return out


def lost_to_text(score: ClassScore) -> str:
    """'11 images lost: 5 to airplane, 3 to ship' ('' where none were lost or none are known)."""
    if not score.lost_to or score.change is None or not score.change.b_only:
        return ""
    dest = ", ".join(f"{k} {'to class ' + n if n.isdigit() else 'to ' + n}" for n, k in score.lost_to)
    return f"{score.change.b_only} image{'' if score.change.b_only == 1 else 's'} lost: {dest}"


def bonferroni_z(comparisons: int, level: float = LEVEL) -> float:
    """The two-sided normal quantile for ``comparisons`` tests at family-wise ``level``."""
    return NormalDist().inv_cdf(1.0 - level / (2.0 * max(1, comparisons)))


def class_scores(result: EvalResult, labels: torch.Tensor, *, reference: EvalResult | None = None,
                 names: Sequence[str] | None = None) -> tuple[ClassScore, ...]:
    """Per-class accuracy of ``result`` (scored by :func:`core.evaluate.evaluate`) on images whose
    labels are ``labels`` (the same order), one :class:`ClassScore` per class present, by label.

    With ``reference`` (another model scored on the same images, e.g. the dense one) each class
    also gets the paired change and whether it is clear (module docstring). ``names`` name the
    labels (e.g. :attr:`core.data.ImageSet.class_names`); a class without one is its number.
    """
    if result.hits is None:
        raise ValueError("the result needs per-image hits (scored by core.evaluate.evaluate)")
    y = labels.reshape(-1).long()
    if y.numel() != result.hits.numel():
        raise ValueError(f"{y.numel()} labels for {result.hits.numel()} scored images")
    hits = result.hits.bool()
    ref = None
    if reference is not None:
        if reference.hits is None or reference.hits.shape != result.hits.shape:
            raise ValueError("the reference was not scored on the same images")
        ref = reference.hits.bool()
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"a label is {int(y.min())}; labels are class indices from 0")
    # one pass per count over all images (bincount), then scalar work per class: fast for
    # ImageNet's 1000 classes too
    size = int(y.max()) + 1 if y.numel() else 0

    def per_class(flags: torch.Tensor | None = None) -> list[int]:
        w = None if flags is None else flags.double()
        return torch.bincount(y, weights=w, minlength=size).round().long().tolist()

    n_c, right_c = per_class(), per_class(hits)
    if ref is not None:
        ref_c, a_c, b_c = per_class(ref), per_class(hits & ~ref), per_class(ref & ~hits)
    present = [c for c in range(size) if n_c[c] > 0]
    z = bonferroni_z(len(present))
    lost_to = _lost_to(result, ref, hits, y) if ref is not None else {}
    out = []
    for c in present:
        n, right = n_c[c], right_c[c]
        change, clear, ref_acc = None, False, None
        if ref is not None:
            a_only, b_only = a_c[c], b_c[c]
            change = PairedDifference((a_only - b_only) / n, paired_interval(a_only, b_only, n), n,
                                      a_only, b_only)
            lo, hi = paired_interval(a_only, b_only, n, z)
            clear = lo > 0.0 or hi < 0.0
            ref_acc = ref_c[c] / n
        out.append(ClassScore(c, class_name(c, names), n, right, right / n, wilson_interval(right, n), ref_acc,
                              change, clear, tuple((class_name(d, names), k) for d, k in lost_to.get(c, ()))))
    return tuple(out)


def class_changes(result: EvalResult | None, reference: EvalResult | None, images: object | None
                  ) -> tuple[ClassScore, ...]:
    """:func:`class_scores` of ``result`` against ``reference`` on ``images`` (an ImageSet: its
    labels ``y`` and ``class_names``), or () where either result is missing or lacks per-image
    hits, or they were not both scored on these images."""
    if (result is None or reference is None or images is None or result.hits is None
            or reference.hits is None or result.hits.shape != reference.hits.shape
            or len(images.y) != result.hits.numel()):
        return ()
    return class_scores(result, images.y, reference=reference, names=getattr(images, "class_names", None))


def most_changed(scores: Sequence[ClassScore], count: int = 3) -> list[ClassScore]:
    """The ``count`` classes whose accuracy fell most against the reference, worst first (ties by
    label); only classes that fell."""
    fell = [s for s in scores if s.change is not None and s.change.difference < 0]
    return sorted(fell, key=lambda s: (s.change.difference, s.label))[:count]


def describe_classes(scores: Sequence[ClassScore], count: int = 3) -> str:
    """One line on the classes that lost most: 'cat −12.9 points [−19.1, −6.6] (clear), dog …';
    how many changes are clear after allowing for all the classes; '' without a reference."""
    if not scores or scores[0].change is None:
        return ""
    worst = most_changed(scores, count)
    clear = [s for s in scores if s.clear]
    down = sum(1 for s in clear if s.change.difference < 0)
    parts = []
    for s in worst:
        lo, hi = s.change.ci
        parts.append(f"{called(s)} {100 * s.change.difference:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                     f"{' (clear)' if s.clear else ''}")
    head = ("largest losses: " + ", ".join(parts)) if parts else "no class lost accuracy"
    verdict = (f"{down} of {len(scores)} classes clearly lower" if down else
               f"no class clearly lower after allowing for {len(scores)} classes")
    up = len(clear) - down
    return f"{head}; {verdict}" + (f", {up} clearly higher" if up else "")


def called(score: ClassScore) -> str:
    """How text names a class: 'cat', or 'class 3' where the class is only its number."""
    return f"class {score.name}" if score.name.isdigit() else score.name


def worst_class_text(scores: Sequence[ClassScore]) -> str:
    """"class 2 -27.3 (clear)": the class that lost most and its change in points, for a table
    cell ('none lower' where no class fell, '–' without scores)."""
    if not scores:
        return "–"
    worst = most_changed(scores, 1)
    if not worst:
        return "none lower"
    w = worst[0]
    return f"{called(w)} {100 * w.change.difference:+.1f}" + (" (clear)" if w.clear else "")


def worst_class_cells(scores: Sequence[ClassScore]) -> list:
    """CSV cells for the class that lost most: its name, change and interval (fractions), and the
    names of the classes clearly lower, ';'-joined (all empty where none fell)."""
    worst = most_changed(scores, 1)
    if not worst:
        return ["", "", "", "", ""]
    w = worst[0]
    lower = ";".join(s.name for s in scores if s.clear and s.change.difference < 0)
    return [w.name, w.change.difference, *w.change.ci, lower]


WORST_CLASS_COLUMNS = ("worst_class", "worst_class_change", "worst_class_lo", "worst_class_hi",
                       "classes_clearly_lower")


def class_rows(scores: Sequence[ClassScore]) -> list[dict]:
    """The scores as plain dicts (for ``--json``): fractions, as everywhere in the JSON."""
    rows = []
    for s in scores:
        row = {"label": s.label, "name": s.name, "n": s.n, "correct": s.correct,
               "accuracy": s.accuracy, "accuracy_ci": list(s.ci)}
        if s.change is not None:
            row.update({"reference_accuracy": s.reference_accuracy, "change": s.change.difference,
                        "change_ci": list(s.change.ci), "images_gained": s.change.a_only,
                        "images_lost": s.change.b_only, "clear": s.clear,
                        "lost_to": [{"class": n, "images": k} for n, k in s.lost_to]})
        rows.append(row)
    return rows


def class_table(scores: Sequence[ClassScore], model: str = "pruned", reference: str = "dense") -> str:
    """A plain-text table, one line per class: images, accuracy (with the reference's) and change."""
    width = max([5, *(len(s.name) for s in scores)])
    a, b = max(7, len(model)), max(7, len(reference))
    with_ref = bool(scores) and scores[0].change is not None
    head = f"  {'class':<{width}}  images  {model:>{a}}"
    head += f"  {reference:>{b}}  change (paired 95% interval)" if with_ref else "  (95% interval)"
    lines = [head]
    for s in scores:
        line = f"  {s.name:<{width}}  {s.n:>6,}  {100 * s.accuracy:>{a - 1}.2f}%"
        if s.change is not None:
            lo, hi = s.change.ci
            line += (f"  {100 * s.reference_accuracy:>{b - 1}.2f}%  {100 * s.change.difference:+6.2f} "
                     f"[{100 * lo:+.2f}, {100 * hi:+.2f}]{'  clear' if s.clear else ''}")
            lost = lost_to_text(s)
            if lost:
                line += f"  ({lost})"
        else:
            line += f"  [{100 * s.ci[0]:.2f}, {100 * s.ci[1]:.2f}]"
        lines.append(line)
    return "\n".join(lines)
