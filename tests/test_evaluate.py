"""Accuracy, loss and their intervals against values known by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from core.errors import Cancelled, StudioError
from core.evaluate import (
    EvalResult,
    evaluate,
    forward_in_chunks,
    paired_difference,
    paired_interval,
    paired_or_none,
    wilson_interval,
)
from core.progress import CancelToken


@dataclass(frozen=True)
class _Images:  # the shape of core.data.ImageSet, without depending on the loader
    x: torch.Tensor
    y: torch.Tensor
    source: str = "test images"


# --------------------------------------------------------------------------------------------
# Wilson interval


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.27754),  # z²/(n+z²) = 3.8416/13.8416
        (10, 10, 0.72246, 1.0),
        (50, 100, 0.40383, 0.59617),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Stat. Med. 17:857, method 3
    ],
)
def test_wilson_interval_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-4)
    assert got[1] == pytest.approx(hi, abs=1e-4)


def test_wilson_interval_closed_form_and_edges():
    z, k, n = 1.96, 37, 120
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    wide = wilson_interval(37, 120, z=2.576)
    assert wide[0] < centre - half and wide[1] > centre + half
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# --------------------------------------------------------------------------------------------
# evaluate


def _identity_classifier() -> torch.nn.Module:
    """Logits = x for 3-feature inputs: the predicted class is the argmax of x."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.9))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3))
        model[0].bias.zero_()
    return model


def _images_with_accuracy(n: int, n_correct: int) -> _Images:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x.argmax(dim=1)
    y[n_correct:] = (y[n_correct:] + 1) % 3  # the rest are labelled wrongly
    return _Images(x, y)


def test_accuracy_and_loss_of_a_known_model():
    images = _images_with_accuracy(200, 150)
    model = _identity_classifier()
    result = evaluate(model, images, batch_size=64)

    assert isinstance(result, EvalResult)
    assert (result.n, result.correct) == (200, 150)
    assert result.accuracy == pytest.approx(0.75)
    assert result.accuracy_ci == pytest.approx(wilson_interval(150, 200))
    losses = F.cross_entropy(images.x, images.y, reduction="none").double()
    assert result.loss == pytest.approx(float(losses.mean()), rel=1e-6)
    half = 1.96 * float(losses.std()) / math.sqrt(200)
    assert result.loss_ci == pytest.approx((float(losses.mean()) - half, float(losses.mean()) + half), rel=1e-6)
    assert result.seconds >= 0
    # each image's classes by probability (softmax of the logits x), all three of them here
    probs = images.x.softmax(dim=1)
    assert torch.equal(result.top_classes.long(), probs.argsort(dim=1, descending=True))
    assert torch.allclose(result.top_probabilities, probs.sort(dim=1, descending=True).values)


def test_two_classes_keep_two_most_probable():
    images = _Images(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    model = torch.nn.Identity()
    result = evaluate(model, images)
    assert result.top_classes.tolist() == [[0, 1], [1, 0]]
    assert result.top_probabilities[0, 0] == pytest.approx(1 / (1 + math.exp(-2)))


def test_batch_size_does_not_change_the_result():
    images = _images_with_accuracy(101, 60)
    model = _identity_classifier()
    a = evaluate(model, images, batch_size=1000)
    b = evaluate(model, images, batch_size=7)
    assert (a.correct, a.n) == (b.correct, b.n) == (60, 101)
    assert a.loss == pytest.approx(b.loss, rel=1e-9)


def test_forward_in_chunks_gives_one_calls_logits_in_calls_of_chunk_images():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 5))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(100, 3, 12, 12)
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    with torch.no_grad():
        whole = net(x)
        chunked = forward_in_chunks(net, x, chunk=32)
    assert calls == [100, 32, 32, 32, 4]
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)

    class TupleOut(torch.nn.Module):  # logits first in a tuple, as evaluate accepts
        def forward(self, x):
            return net(x), "extra"
    with torch.no_grad():
        torch.testing.assert_close(forward_in_chunks(TupleOut(), x, chunk=40), whole,
                                   rtol=1e-6, atol=1e-6)


def test_runs_in_eval_mode_without_grad_and_restores_training_flag():
    images = _images_with_accuracy(50, 50)
    model = _identity_classifier().train()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    result = evaluate(model, images, batch_size=20)
    assert result.accuracy == 1.0  # dropout (p=0.9) would have ruined it in training mode
    assert seen == [(False, False)] * 3
    assert model.training and model[1].training

    model.eval()
    evaluate(model, images)
    assert not model.training


def test_progress_is_reported_per_batch():
    images = _images_with_accuracy(100, 10)
    reports = []
    evaluate(_identity_classifier(), images, batch_size=30, progress=reports.append)
    assert {p.stage for p in reports} == {"evaluate"}
    assert [p.done for p in reports] == [0, 30, 60, 90, 100]
    assert all(p.total == 100 for p in reports)


def test_cancel_raises_and_restores_training_flag():
    images = _images_with_accuracy(100, 10)
    model = _identity_classifier().train()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        evaluate(model, images, cancel=token)
    assert model.training

    token = CancelToken()
    batches = []

    def cancel_after_first_batch(p):
        if p.done > 0:
            batches.append(p.done)
            token.cancel()

    with pytest.raises(Cancelled):
        evaluate(model, images, batch_size=10, progress=cancel_after_first_batch, cancel=token)
    assert batches == [10]  # stopped before the second batch
    assert model.training


def test_bad_inputs_are_studio_errors():
    model = _identity_classifier()
    with pytest.raises(StudioError, match="at least one"):
        evaluate(model, _Images(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(StudioError, match="3 classes"):
        evaluate(model, _Images(torch.zeros(4, 3), torch.tensor([0, 1, 2, 7])))
    with pytest.raises(StudioError, match="shape"):
        evaluate(model, _Images(torch.zeros(4, 5), torch.tensor([0, 1, 2, 0])))


# --------------------------------------------------------------------------------------------
# Paired difference of two models on the same images


def test_paired_interval_known_value():
    # Agresti, Categorical Data Analysis, the prime minister's approval rating in two surveys of
    # the same 1600 people: 794 approve both times, 150 approve → disapprove, 86 the other way,
    # 570 disapprove both times. Difference 0.04 with Wald interval (0.021, 0.059); the
    # adjusted Wald adds ½ per cell, which moves it by less than 0.001 at this n.
    lo, hi = paired_interval(150, 86, 1600)
    assert lo == pytest.approx(0.021, abs=1e-3)
    assert hi == pytest.approx(0.059, abs=1e-3)
    # the formula itself, at a small n where the adjustment shows
    m = 102.0
    centre, se = 7 / m, math.sqrt(14 - 49 / m) / m
    assert paired_interval(10, 3, 100) == pytest.approx((centre - 1.96 * se, centre + 1.96 * se))
    assert paired_interval(0, 0, 50)[0] < 0 < paired_interval(0, 0, 50)[1]
    assert paired_interval(50, 0, 50)[1] == 1.0  # clipped
    with pytest.raises(ValueError):
        paired_interval(30, 30, 50)


def test_paired_description_counts_one_image_in_the_singular():
    from core.evaluate import PairedDifference

    one = PairedDifference(-6 / 539, (-0.02, -0.0003), 539, 1, 7).describe("dense")
    assert one.endswith("1 image better, 7 worse)") and one.startswith("-1.11 points against dense")
    assert PairedDifference(0.0, (-0.01, 0.01), 100, 3, 3).describe().endswith("3 images better, 3 worse)")


def test_paired_interval_covers_the_true_difference_95_percent_of_the_time():
    # two correlated models: each image is right for both (p11), only a (p10), only b (p01).
    # The unpaired Wilson intervals side by side would be far too wide here; a paired
    # interval built with the wrong variance would cover far more (or less) than 95%.
    gen = torch.Generator().manual_seed(0)
    n, reps = 846, 4000
    probs = torch.tensor([0.70, 0.06, 0.03, 0.21])  # p11, p10, p01, p00
    truth = float(probs[1] - probs[2])
    cells = torch.multinomial(probs, n * reps, replacement=True, generator=gen).view(reps, n)
    a_only = (cells == 1).sum(1)
    b_only = (cells == 2).sum(1)
    covered = 0
    for a, b in zip(a_only.tolist(), b_only.tolist()):
        lo, hi = paired_interval(a, b, n)
        covered += lo <= truth <= hi
    assert 0.935 <= covered / reps <= 0.965


def test_paired_difference_of_two_evaluated_models():
    torch.manual_seed(0)
    x = torch.randn(300, 6)
    y = torch.randint(0, 3, (300,))
    a, b = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    ea, eb = evaluate(a, _Images(x, y), batch_size=64), evaluate(b, _Images(x, y), batch_size=64)
    assert ea.hits is not None and ea.hits.dtype == torch.bool and ea.hits.shape == (300,)
    assert int(ea.hits.sum()) == ea.correct
    hits_a = (a(x).argmax(1) == y)
    assert torch.equal(ea.hits, hits_a)
    d = paired_difference(ea, eb)
    assert d.difference == pytest.approx(ea.accuracy - eb.accuracy)
    assert d.a_only - d.b_only == ea.correct - eb.correct
    assert d.ci[0] < d.difference < d.ci[1]
    same = paired_difference(ea, ea)
    assert same.difference == 0 and same.a_only == same.b_only == 0 and not same.excludes_zero
    # the paired interval is narrower than the two Wilson half-widths added
    assert d.ci[1] - d.ci[0] < (ea.accuracy_ci[1] - ea.accuracy_ci[0]) + (eb.accuracy_ci[1] - eb.accuracy_ci[0])
    other = evaluate(a, _Images(x[:200], y[:200]))
    with pytest.raises(ValueError, match="different image sets"):
        paired_difference(ea, other)
    with pytest.raises(ValueError, match="hits"):
        paired_difference(ea, EvalResult(0.5, (0.4, 0.6), 1.0, (0.9, 1.1), 300, 150, 0.0))
    # what views call: None instead of an error
    assert paired_or_none(ea, eb) == d
    assert paired_or_none(ea, other) is None and paired_or_none(None, eb) is None
    assert paired_or_none(ea, EvalResult(0.5, (0.4, 0.6), 1.0, (0.9, 1.1), 300, 150, 0.0)) is None
