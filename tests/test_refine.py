"""Refinement of the kept weights: the Gauss–Newton step's closed form and the engine's guard."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import core.refine as refine
from core.data import load_bundle
from core.demo import load_demo
from core.errors import Cancelled
from core.progress import CancelToken
from core.pruning import PruneRequest, prune
from core.refine import GaussNewtonStep


@pytest.mark.parametrize("n, s", [(8, 20), (30, 12)])
@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_gauss_newton_step_equals_the_direct_levenberg_marquardt_solve(n, s, lam):
    """d = −(A_SᵀA_S + λI)⁻¹g_S with g = Aᵀ𝟙/√n, solved directly in |S| dimensions."""
    g = torch.Generator().manual_seed(n + s)
    A = torch.randn(n, s, generator=g) / n**0.5
    w = torch.randn(s, generator=g)
    new_w, predicted = GaussNewtonStep(A, w).weights(lam)
    Ad = A.double()
    H = Ad.T @ Ad + lam * torch.eye(s, dtype=torch.float64)
    grad = Ad.T @ torch.full((n,), n**-0.5, dtype=torch.float64)
    d = -torch.linalg.solve(H, grad)
    # float32 A: Aᵀu loses ~1e-7 of |u|, which grows as 1/λ on the null space of K_S when n > |S|
    assert torch.allclose(new_w.double(), w.double() + d, atol=1e-4)
    assert predicted == pytest.approx(float(0.5 * d @ H @ d + grad @ d), rel=1e-4)
    assert predicted < 0


SAMPLES = 128


@pytest.fixture(scope="module")
def digits():
    return load_bundle("digits")


@pytest.fixture(scope="module")
def cnn():
    return load_demo("digits_cnn").model


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _flat_masks(result):
    return torch.cat([m.reshape(-1) for m in result.masks.values()])


@pytest.mark.parametrize("method", ["magnitude", "chita"])
def test_refinement_keeps_the_mask_and_lowers_held_out_loss_step_by_step(cnn, digits, method):
    before = _state(cnn)
    req = PruneRequest(method=method, sparsity=0.9, samples=SAMPLES)
    plain = prune(cnn, digits.calibration, req, arch="digits_cnn")
    refined = prune(cnn, digits.calibration, PruneRequest(method=method, sparsity=0.9,
                                                          samples=SAMPLES, refine_steps=3),
                    arch="digits_cnn")
    assert torch.equal(_flat_masks(refined), _flat_masks(plain))
    assert refined.nonzeros == plain.nonzeros
    for name, w in refined.weights.items():
        assert torch.equal(w != 0, refined.masks[name]), name
    steps = refined.info["refinement"]
    assert 1 <= len(steps) <= 3 and steps[0]["accepted"]
    for st in steps:  # accepted steps lower the held-out loss; a refused one ends the walk
        assert st["holdout_loss_after"] <= st["holdout_loss_before"]
        assert st["accepted"] == (st["holdout_loss_after"] < st["holdout_loss_before"])
    assert all(st["accepted"] for st in steps[:-1])
    assert any(not torch.equal(refined.weights[n], plain.weights[n]) for n in plain.weights)
    assert "refine" in refined.timings and "refinement" not in plain.info
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())


def test_a_step_that_raises_held_out_loss_is_not_taken(cnn, digits, monkeypatch):
    """Every candidate made worse on purpose: the refinement stops after one refused step and
    returns the unrefined weights."""
    real = GaussNewtonStep.weights

    def worse(self, lam):
        w, predicted = real(self, lam)
        return self.w + 50.0 * (w - self.w), predicted  # overshoot the step 50×

    monkeypatch.setattr(refine.GaussNewtonStep, "weights", worse)
    req = PruneRequest(method="magnitude", sparsity=0.5, samples=SAMPLES, lam=1e-5)
    plain = prune(cnn, digits.calibration, req, arch="digits_cnn")
    refined = prune(cnn, digits.calibration, replace(req, refine_steps=3), arch="digits_cnn")
    steps = refined.info["refinement"]
    assert len(steps) == 1 and not steps[0]["accepted"]
    for name in plain.weights:
        assert torch.equal(refined.weights[name], plain.weights[name])


def test_cancel_during_refinement_leaves_the_model_alone(cnn, digits):
    before = _state(cnn)
    token = CancelToken()

    def progress(p):
        if p.stage == "refining":
            token.cancel()

    with pytest.raises(Cancelled):
        prune(cnn, digits.calibration, PruneRequest(method="chita", sparsity=0.8, samples=SAMPLES,
                                                    lam=1e-5, refine_steps=2),
              arch="digits_cnn", progress=progress, cancel=token)
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())


def test_chitapp_counts_refinement_steps_in_its_whole_run_progress(cnn, digits):
    reports = []
    res = prune(cnn, digits.calibration, PruneRequest(method="chita++", sparsity=0.8, samples=SAMPLES,
                                                      stages=3, refine_steps=2),
                arch="digits_cnn", progress=reports.append)
    run = [r for r in reports if r.stage == "CHITA++"]
    assert {r.total for r in run} == {3 + 2}
    done = [r.done for r in run]
    assert done == sorted(done) and done[-1] == pytest.approx(4.5)  # into the 2nd step's solves
    assert any("refinement step" in r.message for r in run)
    assert res.info["refinement"] and res.info["refinement"][0]["accepted"]


def test_the_logged_held_out_loss_is_the_returned_networks(cnn, digits):
    """With BatchNorm recalibration on, the network returned (weights and statistics) has
    exactly the held-out loss the refinement log ends with: nothing changes after the last
    decision, and the recalibration decision was made before the first step."""
    from core.batchnorm import has_batchnorm
    from core.pruning import _Context, _mean_loss, apply_result

    assert has_batchnorm(cnn)
    req = PruneRequest(method="magnitude", sparsity=0.9, samples=SAMPLES, refine_steps=2)
    res = prune(cnn, digits.calibration, req, arch="digits_cnn")
    assert res.info["recalibrated"] and "recalibration" in res.info
    steps = res.info["refinement"]
    ctx = _Context.build(cnn, digits.calibration, req, "digits_cnn", None, None)
    pruned = apply_result(cnn, res)
    assert _mean_loss(pruned, ctx.x_h, ctx.y_h) == pytest.approx(steps[-1]["holdout_loss_after"],
                                                                 rel=1e-5)


def test_refining_a_finished_result_equals_refining_in_the_run(cnn, digits):
    """refine_result on a plain result takes the steps a run with refine_steps takes: the same
    held-out images judge them and the same mask is kept; model and result are left alone."""
    from core.pruning import refine_result

    before = _state(cnn)
    req = PruneRequest(method="chita", sparsity=0.9, samples=SAMPLES)
    plain = prune(cnn, digits.calibration, req, arch="digits_cnn")
    plain_weights = {k: v.clone() for k, v in plain.weights.items()}
    in_run = prune(cnn, digits.calibration, replace(req, refine_steps=2), arch="digits_cnn")
    after = refine_result(cnn, digits.calibration, plain, 2, arch="digits_cnn")
    assert torch.equal(_flat_masks(after), _flat_masks(plain))
    assert after.nonzeros == plain.nonzeros and after.lam == plain.lam
    assert after.request.refine_steps == 2 and after.request.sparsity == req.sparsity
    assert [s["accepted"] for s in after.info["refinement"]] == \
        [s["accepted"] for s in in_run.info["refinement"]]
    assert after.info["refinement"][0]["accepted"]
    assert after.info["refinement"][-1]["holdout_loss_after"] == pytest.approx(
        in_run.info["refinement"][-1]["holdout_loss_after"], rel=1e-4)
    for name in plain.weights:
        assert torch.allclose(after.weights[name], in_run.weights[name], atol=1e-5), name
        assert torch.equal(plain.weights[name], plain_weights[name]), name  # the input result
    assert "refinement" not in plain.info
    assert after.timings["refine"] > 0 and after.timings["total"] > plain.timings["total"]
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())


def test_refining_twice_continues_and_logs_every_step(cnn, digits):
    from core.pruning import apply_result, refine_result

    plain = prune(cnn, digits.calibration, PruneRequest(method="magnitude", sparsity=0.9,
                                                        samples=SAMPLES), arch="digits_cnn")
    once = refine_result(cnn, digits.calibration, plain, 1, arch="digits_cnn")
    twice = refine_result(cnn, digits.calibration, once, 1, arch="digits_cnn")
    assert twice.request.refine_steps == 2 and len(twice.info["refinement"]) == 2
    assert twice.info["refinement"][0] == once.info["refinement"][0]
    second = twice.info["refinement"][1]
    assert second["holdout_loss_before"] == pytest.approx(
        once.info["refinement"][0]["holdout_loss_after"], rel=1e-5)
    assert torch.equal(_flat_masks(twice), _flat_masks(plain))
    assert twice.buffers  # BatchNorm statistics travel with the result (digits_cnn has BatchNorm)
    from core.pruning import _Context, _mean_loss
    ctx = _Context.build(cnn, digits.calibration, plain.request, "digits_cnn", None, None)
    assert _mean_loss(apply_result(cnn, twice), ctx.x_h, ctx.y_h) == pytest.approx(
        second["holdout_loss_after"], rel=1e-5)


def test_refining_a_result_can_be_cancelled_and_refuses_zero_steps(cnn, digits):
    from core.errors import StudioError
    from core.pruning import refine_result

    plain = prune(cnn, digits.calibration, PruneRequest(method="magnitude", sparsity=0.8,
                                                        samples=SAMPLES), arch="digits_cnn")
    before, kept = _state(cnn), {k: v.clone() for k, v in plain.weights.items()}
    token = CancelToken()

    def progress(p):
        if p.stage == "refining":
            token.cancel()

    with pytest.raises(Cancelled):
        refine_result(cnn, digits.calibration, plain, 2, arch="digits_cnn", progress=progress,
                      cancel=token)
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())
    assert all(torch.equal(plain.weights[k], kept[k]) for k in kept)
    with pytest.raises(StudioError, match="at least 1"):
        refine_result(cnn, digits.calibration, plain, 0, arch="digits_cnn")
    from core.pruning import MAX_REFINE_STEPS
    almost = replace(plain, request=replace(plain.request, refine_steps=MAX_REFINE_STEPS - 1))
    with pytest.raises(StudioError, match=f"at most {MAX_REFINE_STEPS} in all") as err:
        refine_result(cnn, digits.calibration, almost, 2, arch="digits_cnn")
    assert err.value.fix == "ask for 1 step."


@pytest.mark.parametrize("request_", [
    PruneRequest(method="chita++", sparsity=0.8, samples=SAMPLES, stages=2),
    PruneRequest(method="magnitude_layer", sparsity=0.8, samples=SAMPLES),
    PruneRequest(method="woodfisher", sparsity=0.8, samples=SAMPLES, scope="layer", seed=3),
], ids=["chita++", "magnitude per layer", "woodfisher per layer, seed 3"])
def test_any_result_can_be_refined_and_keeps_its_mask_and_facts(cnn, digits, request_):
    from core.pruning import refine_result

    plain = prune(cnn, digits.calibration, request_, arch="digits_cnn")
    refined = refine_result(cnn, digits.calibration, plain, 1, arch="digits_cnn")
    assert torch.equal(_flat_masks(refined), _flat_masks(plain))
    assert refined.layer_sparsity == plain.layer_sparsity
    assert refined.request == replace(request_, refine_steps=1)
    assert refined.info.get("schedule") == plain.info.get("schedule")
    assert len(refined.info["refinement"]) == 1


def test_a_network_whose_gradients_all_vanish_prunes_by_magnitude_and_refines_nothing():
    """Every ReLU dead: all per-sample gradients are 0, so the Fisher scale of the λ grids is its
    floor (a grid of zeros is no ridge), CHITA's quadratic is the ridge alone and keeps the
    magnitude mask, and the refinement computes a zero step and declines it."""
    from core.methods.quadratic import SCALE_FLOOR, fisher_scale

    assert fisher_scale(torch.zeros(4, 6)) == SCALE_FLOOR
    w = torch.randn(6)
    same, predicted = GaussNewtonStep(torch.zeros(4, 6), w).weights(1e-3)
    assert torch.equal(same, w) and predicted == pytest.approx(0.0, abs=1e-12)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    with torch.no_grad():
        model[1].bias.fill_(-1e3)
    cal = load_bundle("digits").calibration
    req = PruneRequest(method="chita", sparsity=0.5, samples=64, refine_steps=1)
    res = prune(model, cal, req)
    mag = prune(model, cal, replace(req, method="magnitude", refine_steps=0))
    assert all(torch.equal(res.masks[k], mag.masks[k]) for k in mag.masks)
    assert [s["accepted"] for s in res.info["refinement"]] == [False]


def test_gradients_that_are_not_finite_are_a_studio_error():
    from core.errors import StudioError
    from core.methods.quadratic import fisher_scale

    with pytest.raises(StudioError, match="not finite"):
        fisher_scale(torch.tensor([[float("nan"), 1.0]]))
