"""The pruning orchestration on the digits demo models: budgets, masks, untouched inputs, λ choice, accuracy."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

import core.pruning as pruning
from core.batchnorm import describe_batchnorm
from core.data import load_bundle
from core.demo import load_demo
from core.errors import Cancelled, StudioError
from core.evaluate import evaluate
from core.methods.selection import global_budget, layer_budgets
from core.progress import CancelToken
from core.pruning import (
    LAMBDA_GRID,
    METHODS,
    UPDATE_SCALES,
    PruneRequest,
    apply_result,
    default_layers,
    describe_update_scale,
    prune,
)
from core.schedule import SCHEDULES, auto_stages, chitapp_schedule

SAMPLES = 128
LAM = 1e-5  # a fixed λ keeps most runs to one solve
ARCHS = ("digits_mlp", "digits_cnn")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one thread is faster than two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_bundle("digits")


@pytest.fixture(scope="module")
def models():
    return {arch: load_demo(arch).model for arch in ARCHS}


def _snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            {n: m.training for n, m in model.named_modules()})


def _assert_same(model, snap) -> None:
    state, req, modes = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert now[k].dtype == v.dtype and torch.equal(now[k], v), k
    assert {n: p.requires_grad for n, p in model.named_parameters()} == req
    assert {n: m.training for n, m in model.named_modules()} == modes


@pytest.fixture(scope="module")
def run(models, digits):
    """prune() with the test defaults, each distinct request run once per module.

    Also records whether the input model's state, flags and modes were unchanged by the run.
    """
    cache: dict = {}

    def _run(arch: str, **kw):
        key = (arch, tuple(sorted(kw.items())))
        if key not in cache:
            kw.setdefault("samples", SAMPLES)
            model = models[arch]
            snap = _snapshot(model)
            result = prune(model, digits.calibration, PruneRequest(**kw), arch=arch)
            try:
                _assert_same(model, snap)
                unchanged = True
            except AssertionError:
                unchanged = False
            cache[key] = (result, unchanged)
        return cache[key]

    return _run


def _sizes(model, arch):
    params = dict(model.named_parameters())
    names = default_layers(model, arch)
    return names, [params[n].numel() for n in names]


def _count_calls(monkeypatch, name: str) -> list:
    """Wrap ``core.pruning.<name>`` to record each call's (args, kwargs); return the record."""
    calls: list = []
    real = getattr(pruning, name)

    def spy(*args, **kw):
        calls.append((args, kw))
        return real(*args, **kw)

    monkeypatch.setattr(pruning, name, spy)
    return calls


def _check_masks_and_weights(result, model, names, sizes):
    params = dict(model.named_parameters())
    assert list(result.masks) == names and list(result.weights) == names
    total_kept = 0
    for name, size in zip(names, sizes):
        mask, w = result.masks[name], result.weights[name]
        assert mask.dtype == torch.bool and mask.shape == params[name].shape
        assert w.shape == params[name].shape and w.dtype == params[name].dtype
        assert torch.equal(w != 0, mask), f"{name}: weights are not zero exactly off the mask"
        kept = int(mask.sum())
        total_kept += kept
        assert result.layer_sparsity[name] == pytest.approx(1.0 - kept / size, abs=1e-12)
    assert total_kept == result.nonzeros


# --------------------------------------------------------------------------- budgets, masks and weights


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_keeps_the_global_budget_at_70_percent(run, models, arch, method):
    result, _ = run(arch, method=method, sparsity=0.7, lam=LAM, stages=3)
    names, sizes = _sizes(models[arch], arch)
    p = sum(sizes)
    assert result.total == p
    if method == "magnitude_layer":  # the same sparsity in every layer, whatever the scope
        expected = sum(layer_budgets(sizes, 0.7))
    else:
        expected = round(0.3 * p)
    assert result.nonzeros == expected
    assert result.sparsity == pytest.approx(1.0 - expected / p, abs=1e-12)
    assert abs(result.sparsity - 0.7) <= len(sizes) / p
    _check_masks_and_weights(result, models[arch], names, sizes)
    if method in ("magnitude", "magnitude_layer", "obd"):  # no weight update: kept weights are the originals
        params = dict(models[arch].named_parameters())
        for name in names:
            m = result.masks[name]
            assert torch.equal(result.weights[name][m], params[name].detach()[m])


@pytest.mark.parametrize("method", METHODS)
def test_layer_scope_gives_each_layer_the_requested_sparsity(run, models, method):
    arch = "digits_mlp"
    result, _ = run(arch, method=method, sparsity=0.7, scope="layer", lam=LAM, stages=2)
    names, sizes = _sizes(models[arch], arch)
    _check_masks_and_weights(result, models[arch], names, sizes)
    for name, size, kept in zip(names, sizes, layer_budgets(sizes, 0.7)):
        assert int(result.masks[name].sum()) == kept
        assert abs(result.layer_sparsity[name] - 0.7) <= 1.0 / size


def test_layer_scope_on_the_cnn_with_chita(run, models):
    arch = "digits_cnn"
    result, _ = run(arch, method="chita", sparsity=0.8, scope="layer", lam=LAM)
    names, sizes = _sizes(models[arch], arch)
    for name, size in zip(names, sizes):
        assert abs(result.layer_sparsity[name] - 0.8) <= 1.0 / size
        assert int(result.masks[name].sum()) == round(0.2 * size)


# --------------------------------------------------------------------------- the input model is never modified


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_input_model_unchanged_after_a_successful_run(run, arch, method):
    _, unchanged = run(arch, method=method, sparsity=0.7, lam=LAM, stages=3)
    assert unchanged


@pytest.mark.parametrize("method", ["magnitude", "woodfisher"])
def test_input_model_in_train_mode_stays_in_train_mode(models, digits, method):
    """prune() works in eval mode on its own copy: the caller's modes and BatchNorm stats stay."""
    model = copy.deepcopy(models["digits_cnn"]).train()
    snap = _snapshot(model)
    result = prune(model, digits.calibration,
                   PruneRequest(method=method, sparsity=0.7, samples=64, lam=LAM), arch="digits_cnn")
    assert result.nonzeros > 0
    _assert_same(model, snap)
    assert model.training


def test_input_model_unchanged_when_the_solver_raises_midway(models, digits, monkeypatch):
    """The solver fails after the BatchNorm refresh, the gradients and the λ selection."""
    model = models["digits_cnn"]
    snap = _snapshot(model)
    real = pruning.chita_solve
    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs.get("lam", args[4] if len(args) > 4 else None))
        if len(calls) == 1:
            raise RuntimeError("solver failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(pruning, "chita_solve", flaky)
    with pytest.raises(RuntimeError, match="solver failed"):
        prune(model, digits.calibration, PruneRequest(method="chita", sparsity=0.7, samples=64),
              arch="digits_cnn")
    assert len(calls) == 1
    _assert_same(model, snap)


@pytest.mark.parametrize("method", ["chita", "chita++", "obd", "woodfisher"])
def test_cancel_from_the_first_progress_report(models, digits, method):
    model = models["digits_cnn"]
    snap = _snapshot(model)
    token = CancelToken()
    reports = []

    def progress(p):
        reports.append(p)
        token.cancel()

    with pytest.raises(Cancelled):
        prune(model, digits.calibration,
              PruneRequest(method=method, sparsity=0.7, samples=SAMPLES, lam=LAM, stages=3),
              arch="digits_cnn", progress=progress, cancel=token)
    first = reports[0] if reports else None  # CHITA++ reports its stages as one whole-run stage
    assert first and (first.stage == "CHITA++" if method == "chita++" else first.stage == "gradients")
    assert "gradients" in first.message
    assert all(r.stage != "done" for r in reports)
    _assert_same(model, snap)


@pytest.mark.parametrize("method", ["chita", "woodfisher"])
def test_cancel_during_the_lambda_walk_stops_before_the_next_held_out_batch(models, digits, monkeypatch,
                                                                           method):
    """A cancel while λ is being chosen ends the run at the next held-out batch, not after the walk."""
    model = models["digits_cnn"]
    snap = _snapshot(model)
    token = CancelToken()
    batches = []
    real = pruning._Context._holdout_batch
    monkeypatch.setattr(pruning._Context, "_holdout_batch",
                        lambda self, trial, a, b: (batches.append((a, b)), real(self, trial, a, b))[1])

    def progress(p):
        if p.stage == "choosing λ":
            token.cancel()

    with pytest.raises(Cancelled):
        prune(model, digits.calibration, PruneRequest(method=method, sparsity=0.7, samples=SAMPLES),
              arch="digits_cnn", progress=progress, cancel=token)
    # at most the batch being prepared when the cancel came (WoodFisher's solve checks it first)
    assert batches in ([], [(0, pruning.HOLDOUT_BATCH)])
    _assert_same(model, snap)


@pytest.mark.parametrize("method", METHODS)
def test_already_cancelled_token_raises_for_every_method(models, digits, method):
    model = models["digits_cnn"]
    snap = _snapshot(model)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        prune(model, digits.calibration, PruneRequest(method=method, sparsity=0.5, samples=32, lam=LAM),
              arch="digits_cnn", cancel=token)
    _assert_same(model, snap)


# --------------------------------------------------------------------------- apply_result and accuracy


def test_apply_result_returns_a_pruned_copy_and_leaves_the_input(run, models):
    model = models["digits_cnn"]
    result, _ = run("digits_cnn", method="chita", sparsity=0.7, lam=LAM, stages=3)
    assert result.buffers, "a BatchNorm model's result carries recalibrated statistics"
    assert result.info["recalibrated"] is True
    snap = _snapshot(model)
    pruned = apply_result(model, result)
    _assert_same(model, snap)
    assert pruned is not model and not pruned.training
    orig_params, new_params = dict(model.named_parameters()), dict(pruned.named_parameters())
    for name, p in new_params.items():
        assert p.data_ptr() != orig_params[name].data_ptr()
        if name in result.weights:
            assert torch.equal(p.detach(), result.weights[name])
        else:
            assert torch.equal(p.detach(), orig_params[name].detach())
    new_bufs = dict(pruned.named_buffers())
    for name, b in result.buffers.items():
        assert torch.equal(new_bufs[name], b)
    assert any(not torch.equal(new_bufs[n], dict(model.named_buffers())[n])
               for n in result.buffers if n.endswith("running_mean"))
    with torch.no_grad():  # the copy is independent
        next(iter(new_params.values())).add_(1.0)
    _assert_same(model, snap)


@pytest.fixture(scope="module")
def chita_auto_09(run):
    """CHITA at 90% on the MLP with λ chosen on held-out calibration loss (the default request)."""
    return run("digits_mlp", method="chita", sparsity=0.9)[0]


def test_magnitude_at_half_sparsity_is_near_dense_accuracy(run, models, digits):
    model = models["digits_mlp"]
    dense = evaluate(model, digits.evaluation).accuracy
    result, _ = run("digits_mlp", method="magnitude", sparsity=0.5)
    pruned = evaluate(apply_result(model, result), digits.evaluation).accuracy
    assert dense > 0.9
    assert pruned >= dense - 0.05, (dense, pruned)


def test_chita_at_90_percent_is_at_least_as_accurate_as_magnitude(run, models, digits, chita_auto_09):
    model = models["digits_mlp"]
    mag, _ = run("digits_mlp", method="magnitude", sparsity=0.9)
    acc_mag = evaluate(apply_result(model, mag), digits.evaluation).accuracy
    acc_chita = evaluate(apply_result(model, chita_auto_09), digits.evaluation).accuracy
    assert acc_chita >= acc_mag, {"chita": acc_chita, "magnitude": acc_mag}


# --------------------------------------------------------------------------- solver report and λ


def test_chita_reports_objective_not_above_magnitude(chita_auto_09):
    final = chita_auto_09.info["final"]
    assert final, "no solve reports the magnitude backsolve at its λ"
    for s in final:
        assert s["objective"] <= s["magnitude_objective"], s
        assert s["lam"] == chita_auto_09.lam
        # the floor no mask of this size goes below: (λ/2)·Σ of the pruned magnitude mask's w̄²
        assert 0 < s["objective_lower_bound"] <= s["objective"], s
    trace = chita_auto_09.objective_trace
    assert trace and all(b <= a * (1 + 1e-6) for a, b in zip(trace, trace[1:]))


def test_lambda_is_chosen_on_held_out_loss_when_not_given(chita_auto_09):
    info = chita_auto_09.info
    assert info["samples"] == SAMPLES and info["holdout"] > 0
    (sel,) = info["lambda_selection"]
    fbar = sel["grid"][0] / LAMBDA_GRID[0]  # the grid is LAMBDA_GRID × the mean Fisher diagonal
    assert fbar > 0
    assert sel["grid"] == pytest.approx([g * fbar for g in LAMBDA_GRID], rel=1e-9)
    losses = sel["holdout_loss"]
    scored = [i for i, v in enumerate(losses) if v is not None]
    assert len(losses) == len(LAMBDA_GRID) and len(scored) >= 3
    assert all(math.isfinite(losses[i]) for i in scored)
    best = sel["grid"].index(sel["chosen"])
    assert sel["chosen"] == chita_auto_09.lam and best in scored
    # the walk stops where no neighbour is clearly lower: every grid neighbour of the choice was
    # scored, and is higher, or lower by a difference that stayed unclear on every held-out image
    # (a clear one ends the paired test early and is taken; HOLDOUT_MOVE_Z)
    images = sel["holdout_images"]
    for nb in (best - 1, best + 1):
        if 0 <= nb < len(losses):
            assert losses[nb] is not None
            assert losses[nb] >= losses[best] or images[nb] == images[best] == info["holdout"]
    assert [s["lam"] for s in info["solver"]] == [sel["chosen"]]  # the mask search runs at λ*


class _FakeLosses:
    """A _Context whose held-out loss (and error rate) is read from a table: tests the λ walk alone."""

    def __init__(self, losses, start=None, errors=None, score="loss", per_image=None):
        from core.pruning import _Context
        self.ctx = _Context()
        self.ctx.request = PruneRequest(lambda_score=score)
        self.ctx.lam_index, self.ctx.cancel, self.ctx.progress = start, None, None
        self.scored: list[int] = []
        errors = errors or [0.0] * len(losses)
        # every image of candidate i has loss losses[i], or per_image[i] (one row per candidate)
        self.ctx.x_h = torch.zeros(300 if per_image is None else per_image.shape[1], 1)
        self.ctx._holdout_model = lambda work, w: (self.scored.append(w), w)[1]
        self.ctx._holdout_batch = lambda i, a, b: (
            torch.full((b - a,), float(losses[i]), dtype=torch.float64) if per_image is None
            else per_image[i, a:b],
            torch.full((b - a,), float(errors[i]), dtype=torch.float64))

    def choose(self, n):
        info: dict = {}
        best = self.ctx._choose_lambda(None, list(range(n)), [lambda i=i: i for i in range(n)],
                                       info, 0.5, "")
        return best, info["lambda_selection"][0]


@pytest.mark.parametrize("losses", [
    [5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [3, 2, 1, 2, 3], [2, 1, 3, 4, 5], [5, 4, 3, 1, 2],
    [4, 3, 2, 1.5, 1.4], [1, 1, 1, 1, 1],
])
@pytest.mark.parametrize("start", [None, 0, 4, 1])
def test_lambda_walk_finds_the_minimum_of_a_unimodal_grid(losses, start):
    fake = _FakeLosses(losses, start)
    best, sel = fake.choose(len(losses))
    assert losses[best] == min(losses)
    assert len(fake.scored) == len(set(fake.scored))  # no λ scored twice
    assert fake.ctx.lam_index == best  # the next walk starts here
    assert [v is not None for v in sel["holdout_loss"]] == [i in fake.scored for i in range(5)]
    if start is None and losses == [3, 2, 1, 2, 3]:
        assert sorted(fake.scored) == [1, 2, 3]  # a minimum at the start costs 3 passes


@pytest.mark.parametrize("arch, sparsity", [("digits_mlp", 0.95), ("digits_cnn", 0.9)])
def test_paired_early_stop_chooses_what_every_held_out_image_chooses(models, digits, monkeypatch,
                                                                    arch, sparsity):
    """The walk's comparisons stop early on clear differences (fewer images scored) and choose
    the λ, and so the mask and weights, that scoring every candidate on every image chooses."""
    req = PruneRequest(method="chita", sparsity=sparsity, samples=SAMPLES)
    fast = prune(models[arch], digits.calibration, req, arch=arch)
    monkeypatch.setattr(pruning, "HOLDOUT_Z", math.inf)
    monkeypatch.setattr(pruning, "HOLDOUT_FUTILITY_Z", math.inf)
    full = prune(models[arch], digits.calibration, req, arch=arch)
    (sel_fast,), (sel_full,) = fast.info["lambda_selection"], full.info["lambda_selection"]
    total = fast.info["holdout"]
    assert sel_fast["chosen"] == sel_full["chosen"] == fast.lam
    assert all(torch.equal(fast.masks[k], full.masks[k]) for k in fast.masks)
    assert all(torch.equal(fast.weights[k], full.weights[k]) for k in fast.weights)
    assert set(sel_full["holdout_images"]) <= {0, total}  # baseline: all images or none
    scored = [m for m in sel_fast["holdout_images"] if m]
    assert all(m % pruning.HOLDOUT_BATCH == 0 or m == total for m in scored)
    assert any(m < total for m in scored)  # at least one comparison was decided early
    assert sum(sel_fast["holdout_images"]) < sum(sel_full["holdout_images"])


@pytest.mark.parametrize("method, arch, sparsity", [
    ("chita", "digits_mlp", 0.8), ("chita", "digits_cnn", 0.9), ("woodfisher", "digits_mlp", 0.95)])
def test_the_futility_stop_changes_no_choice_and_saves_held_out_images(
        models, digits, monkeypatch, method, arch, sparsity):
    """HOLDOUT_FUTILITY_Z only ends comparisons early: against the same walk without it
    (inf), the walk chooses the same λ, so the same masks and weights, on fewer held-out
    images."""
    req = PruneRequest(method=method, sparsity=sparsity, samples=SAMPLES)
    assert pruning.HOLDOUT_FUTILITY_Z == 3.0
    with_stop = prune(models[arch], digits.calibration, req, arch=arch)
    monkeypatch.setattr(pruning, "HOLDOUT_FUTILITY_Z", math.inf)
    without = prune(models[arch], digits.calibration, req, arch=arch)
    sel_a, sel_b = with_stop.info["lambda_selection"], without.info["lambda_selection"]
    assert [s["chosen"] for s in sel_a] == [s["chosen"] for s in sel_b]
    assert all(torch.equal(with_stop.masks[k], without.masks[k]) for k in with_stop.masks)
    assert all(torch.equal(with_stop.weights[k], without.weights[k]) for k in with_stop.weights)
    images_a = sum(sum(s["holdout_images"]) for s in sel_a)
    images_b = sum(sum(s["holdout_images"]) for s in sel_b)
    assert images_a < images_b, (images_a, images_b)


@pytest.mark.parametrize("gap_in_se, moves", [(1.0, False), (3.0, True)])
def test_lambda_walk_steps_only_when_the_neighbour_is_lower_by_holdout_move_z_errors(
        monkeypatch, gap_in_se, moves):
    """Candidates whose per-image losses differ by noise: candidate 1 (left of the start, 2) is
    lower on average by ``gap_in_se`` standard errors of the paired difference over all 500
    images. The walk moves there only beyond HOLDOUT_MOVE_Z = 2; with 0, by any amount."""
    g = torch.Generator().manual_seed(5)
    base = 1.0 + torch.rand(500, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 500, generator=g, dtype=torch.float64)
    noise = (noise - noise.mean(1, keepdim=True)) / noise.std(1, keepdim=True)
    rows = base + 0.2 * noise
    rows[0] += 1.0  # far worse: never chosen
    diff_sd = float((rows[1] - rows[2]).std())
    rows[1] += float(rows[2].mean() - rows[1].mean()) - gap_in_se * diff_sd / math.sqrt(500)
    assert pruning.HOLDOUT_MOVE_Z == 2.0
    best, _ = _FakeLosses([0, 0, 0], start=2, per_image=rows).choose(3)
    assert best == (1 if moves else 2)
    monkeypatch.setattr(pruning, "HOLDOUT_MOVE_Z", 0.0)
    best, _ = _FakeLosses([0, 0, 0], start=2, per_image=rows).choose(3)
    assert best == 1  # any lower mean wins without the margin


def test_single_runs_walk_with_the_margin_and_chitapp_stages_without(models, digits, monkeypatch):
    """HOLDOUT_MOVE_Z and HOLDOUT_FUTILITY_Z for a single-stage run's walk; STAGE_MOVE_Z (0)
    and STAGE_FUTILITY_Z (inf: no futility stop) for every CHITA++ stage."""
    seen: list[tuple[float, float]] = []

    class Recording(pruning.PairedHoldout):
        def __init__(self, *a, **k):
            seen.append((k["move_z"], k["futility_z"]))
            super().__init__(*a, **k)

    monkeypatch.setattr(pruning, "PairedHoldout", Recording)
    prune(models["digits_mlp"], digits.calibration,
          PruneRequest(method="chita++", sparsity=0.7, samples=SAMPLES, stages=3), arch="digits_mlp")
    assert seen == [(pruning.STAGE_MOVE_Z, pruning.STAGE_FUTILITY_Z)] * 3
    assert pruning.STAGE_MOVE_Z == 0.0 and pruning.STAGE_FUTILITY_Z == math.inf
    seen.clear()
    prune(models["digits_mlp"], digits.calibration,
          PruneRequest(method="chita", sparsity=0.7, samples=SAMPLES), arch="digits_mlp")
    assert seen == [(pruning.HOLDOUT_MOVE_Z, pruning.HOLDOUT_FUTILITY_Z)]
    assert pruning.HOLDOUT_MOVE_Z > 0 and pruning.HOLDOUT_FUTILITY_Z < math.inf


@pytest.mark.parametrize("end", [0, len(LAMBDA_GRID) - 1])
def test_lambda_walk_on_the_real_grid_starts_at_lambda_start_and_reaches_either_end(end):
    """A held-out loss still falling at an end is followed there: no stop mid-grid."""
    from core.pruning import LAMBDA_START

    losses = [abs(i - end) for i in range(len(LAMBDA_GRID))]
    fake = _FakeLosses(losses)
    best, sel = fake.choose(len(LAMBDA_GRID))
    assert best == end
    assert fake.scored[0] == LAMBDA_START and LAMBDA_GRID[LAMBDA_START] == 1e-2
    assert LAMBDA_GRID[0] >= 1e2 and LAMBDA_GRID[-1] <= 1e-5  # room above and below the old 1 … 1e-4


def test_lambda_walk_on_held_out_accuracy_minimises_the_error_then_the_loss():
    """lambda_score="accuracy": the error rate decides, the loss breaks its ties; both are recorded."""
    losses = [5.0, 4.0, 3.0, 2.0, 1.0]  # the loss alone walks to the end
    errors = [0.5, 0.4, 0.3, 0.3, 0.45]  # the error is lowest at 2 and 3; the loss prefers 3
    best, sel = _FakeLosses(losses, start=0, errors=errors, score="accuracy").choose(5)
    assert best == 3
    assert sel["score"] == "accuracy"
    assert [sel["holdout_error"][i] for i in range(5) if sel["holdout_error"][i] is not None] == pytest.approx(errors[:5])
    by_loss, sel = _FakeLosses(losses, start=0, errors=errors).choose(5)
    assert by_loss == 4 and sel["score"] == "loss"


def test_a_run_with_lambda_score_accuracy_picks_the_lowest_held_out_error(run):
    result, unchanged = run("digits_mlp", method="chita", sparsity=0.9, lambda_score="accuracy")
    assert unchanged
    (sel,) = result.info["lambda_selection"]
    assert sel["score"] == "accuracy"
    scored = [i for i, v in enumerate(sel["holdout_error"]) if v is not None]
    assert len(scored) >= 3 and all(sel["holdout_loss"][i] is not None for i in scored)
    key = {i: (sel["holdout_error"][i], sel["holdout_loss"][i]) for i in scored}
    best = min(scored, key=key.__getitem__)
    assert sel["chosen"] == sel["grid"][best] == result.lam
    assert all(0.0 <= key[i][0] <= 1.0 for i in scored)
    assert result.nonzeros == global_budget(result.total, 0.9)


def test_unknown_lambda_score_is_refused(models, digits):
    with pytest.raises(StudioError) as err:
        prune(models["digits_mlp"], digits.calibration, PruneRequest(method="chita", lambda_score="auc"))
    assert err.value.field == "lambda score" and "loss" in str(err.value.fix)


def test_lambda_walk_stops_at_the_first_local_minimum():
    fake = _FakeLosses([1, 3, 2, 4, 5], start=2)
    best, _ = fake.choose(5)
    assert best == 2 and sorted(fake.scored) == [1, 2, 3]


@pytest.mark.parametrize("method", ["chita", "woodfisher"])
def test_given_lambda_is_used_as_is(run, method):
    result, _ = run("digits_mlp", method=method, sparsity=0.7, lam=LAM, stages=3)
    assert result.lam == LAM
    assert "lambda_selection" not in result.info
    if method == "chita":
        assert [s["lam"] for s in result.info["solver"]] == [LAM]


def test_magnitude_and_obd_report_no_lambda(run):
    for method in ("magnitude", "obd"):
        result, _ = run("digits_mlp", method=method, sparsity=0.7, lam=LAM, stages=3)
        assert result.lam is None and result.objective_trace == ()


# --------------------------------------------------------------------------- CHITA++


@pytest.mark.parametrize("layers,stages", [(1, 10), (3, 10), (14, 14), (20, 20), (53, 20)])
def test_auto_stages_is_one_per_layer_between_10_and_20(layers, stages):
    assert auto_stages(layers) == stages


def test_chitapp_with_stages_0_uses_the_auto_count(run, models):
    result, _ = run("digits_mlp", method="chita++", sparsity=0.5, lam=LAM, stages=0)
    names, _ = _sizes(models["digits_mlp"], "digits_mlp")
    assert len(result.info["schedule"]) == auto_stages(len(names))
    assert len(result.info["solver"]) == auto_stages(len(names))


@pytest.mark.parametrize("between", [False, True])
def test_chitapp_recalibrates_after_the_last_stage_unless_asked_between(run, between):
    result, _ = run("digits_cnn", method="chita++", sparsity=0.6, lam=LAM, stages=3,
                    recalibrate_bn=True, recalibrate_between_stages=between)
    info = result.info
    if between:
        stages = info["recalibration_stages"]
        assert len(stages) == 3 and "recalibration" not in info
        assert all({"holdout_loss_before", "holdout_loss_after", "applied"} <= set(d) for d in stages)
    else:
        assert "recalibration_stages" not in info
        final = info["recalibration"]  # one decision, after the last stage, on held-out loss
        assert final["applied"] == (final["holdout_loss_after"] < final["holdout_loss_before"])
    assert result.buffers and info["recalibrated"] is True


def test_chitapp_caps_intermediate_mask_searches_and_converges_the_last(models, digits, monkeypatch):
    import core.pruning as pruning

    calls = []
    real = pruning.chita_solve

    def spy(*args, **kw):
        calls.append(kw.get("max_refresh"))
        return real(*args, **kw)

    monkeypatch.setattr(pruning, "chita_solve", spy)
    result = prune(models["digits_mlp"], digits.calibration,
                   PruneRequest(method="chita++", sparsity=0.7, samples=SAMPLES, lam=LAM, stages=3),
                   arch="digits_mlp")
    assert calls[:2] == [pruning.STAGE_REFRESHES] * 2 and calls[2] == 100
    assert result.info["solver"][-1]["converged"] is True


def test_chitapp_runs_one_solve_per_stage_and_keeps_exact_k(run, models):
    result, _ = run("digits_mlp", method="chita++", sparsity=0.7, lam=LAM, stages=3)
    names, sizes = _sizes(models["digits_mlp"], "digits_mlp")
    assert result.nonzeros == round(0.3 * sum(sizes))
    assert [s["lam"] for s in result.info["solver"]] == [LAM] * 3


@pytest.mark.parametrize("shape", SCHEDULES)
@pytest.mark.parametrize("stages", [2, 3, 5, 10, 20])
@pytest.mark.parametrize("target", [0.5, 0.9, 0.98])
def test_chitapp_schedule_rises_to_target_with_a_small_last_step(stages, target, shape):
    sched = chitapp_schedule(target, stages, shape)
    assert len(sched) == stages
    assert sched[-1] == pytest.approx(target, abs=1e-12)
    assert 0.0 < sched[0] and all(b > a for a, b in zip(sched, sched[1:]))
    steps = [sched[0]] + [b - a for a, b in zip(sched, sched[1:])]
    assert steps[-1] < steps[0]
    assert all(s <= target + 1e-12 for s in sched)


def test_chitapp_schedule_with_one_stage_is_the_target():
    for shape in SCHEDULES:
        assert chitapp_schedule(0.8, 1, shape) == pytest.approx([0.8])
        assert chitapp_schedule(0.8, 0, shape) == pytest.approx([0.8])
    assert chitapp_schedule(0.0, 3) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("stages", [3, 10, 20])
@pytest.mark.parametrize("target", [0.5, 0.9, 0.98])
def test_log_schedule_removes_shrinking_shares_of_the_kept_weights(stages, target):
    """Stage t removes a share of the weights still kept that falls with t (linearly in log
    density); the cubic schedule's shares rise before they fall."""
    def shares(sched):
        kept = [1.0] + [1.0 - s for s in sched]
        return [1.0 - b / a for a, b in zip(kept, kept[1:])]

    log = shares(chitapp_schedule(target, stages, "log"))
    assert all(b < a for a, b in zip(log, log[1:]))
    steps = [-math.log1p(-r) for r in log]  # log-density steps: an arithmetic sequence
    gaps = [a - b for a, b in zip(steps, steps[1:])]
    assert max(gaps) - min(gaps) < 1e-9 * max(steps)
    assert sum(steps) == pytest.approx(-math.log1p(-target))
    if target >= 0.9:  # at high sparsity the cubic schedule's largest share comes later
        cubic = shares(chitapp_schedule(target, stages, "cubic"))
        assert max(cubic) > cubic[0]


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(StudioError) as err:
        pruning.validate_request(PruneRequest(method="chita++", schedule="linear"))
    assert err.value.field == "schedule" and "log" in err.value.fix
    with pytest.raises(ValueError):
        chitapp_schedule(0.9, 5, "linear")


# --------------------------------------------------------------------------- request validation


@pytest.mark.parametrize("kwargs, field", [
    ({"method": "prune-everything"}, "method"),
    ({"sparsity": 1.0}, "sparsity"),
    ({"sparsity": -0.1}, "sparsity"),
    ({"sparsity": float("nan")}, "sparsity"),
    ({"scope": "network"}, "scope"),
    ({"samples": 0}, "samples"),
    ({"lam": 0.0}, "lambda"),
    ({"refine_steps": -1}, "refine steps"),
    ({"refine_steps": 21}, "refine steps"),
    ({"layers": ("fc1.weight", "fc9.weight")}, "layers"),
])
def test_bad_requests_raise_studio_error_naming_the_field(models, digits, kwargs, field):
    model = models["digits_mlp"]
    snap = _snapshot(model)
    with pytest.raises(StudioError) as err:
        prune(model, digits.calibration, PruneRequest(**kwargs), arch="digits_mlp")
    assert err.value.field == field
    assert f"[field: {field}]" in str(err.value)
    _assert_same(model, snap)


def test_seed_changes_the_gradient_sample_and_zero_keeps_the_data_order(models, digits):
    """seed 0: the calibration split's own order; another seed: another sample for G."""
    model = models["digits_mlp"]
    a = prune(model, digits.calibration, PruneRequest(method="obd", sparsity=0.7, samples=64, seed=0))
    b = prune(model, digits.calibration, PruneRequest(method="obd", sparsity=0.7, samples=64, seed=0))
    c = prune(model, digits.calibration, PruneRequest(method="obd", sparsity=0.7, samples=64, seed=3))
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert any(not torch.equal(a.masks[k], c.masks[k]) for k in a.masks)


@pytest.mark.parametrize("seed", [0, 3])
def test_batchnorm_images_never_include_the_held_out_ones(models, seed):
    """The held-out loss judges recalibrations: it must not see the images they were run on."""
    from core.data import ImageSet
    from core.pruning import BN_IMAGES, HOLDOUT, _Context

    g = torch.Generator().manual_seed(1)
    images = ImageSet(x=torch.randn(3000, 1, 8, 8, generator=g),
                      y=torch.randint(0, 10, (3000,), generator=g), source="random")
    ctx = _Context.build(models["digits_mlp"], images,
                         PruneRequest(method="chita", samples=BN_IMAGES // 2, seed=seed), "digits_mlp",
                         None, None)  # fewer samples than BN_IMAGES: the statistics take more images
    held_out = {row.numpy().tobytes() for row in ctx.x_h}
    used = [row.numpy().tobytes() for row in ctx.bn_images]
    assert len(held_out) == HOLDOUT and len(used) == BN_IMAGES
    assert not held_out.intersection(used)
    assert {row.numpy().tobytes() for row in ctx.x_g} <= set(used)  # G's images come first


@pytest.mark.parametrize("resample", [True, False])
def test_chitapp_stages_take_new_gradient_images_never_held_out_ones(models, monkeypatch, resample):
    """resample_stages: stage 1 uses single-stage CHITA's images, each later stage the next block
    (cycling through every calibration image but the held-out ones); off: the same images."""
    from core.data import ImageSet
    from core.pruning import HOLDOUT

    g = torch.Generator().manual_seed(2)
    n_images, n = 900, 160
    images = ImageSet(x=torch.randn(n_images, 1, 8, 8, generator=g),
                      y=torch.randint(0, 10, (n_images,), generator=g), source="random")
    calls = _count_calls(monkeypatch, "fisher_factor")
    request = PruneRequest(method="chita++", sparsity=0.6, samples=n, lam=LAM, stages=4,
                           resample_stages=resample)
    prune(models["digits_mlp"], images, request, arch="digits_mlp")
    seen = [[row.numpy().tobytes() for row in args[1]] for args, _ in calls]
    rows = [r.numpy().tobytes() for r in images.x]
    held_out = set(rows[n:n + HOLDOUT])
    pool = rows[:n] + rows[n + HOLDOUT:]  # 400 images for 4 stages of 160: the last one wraps
    assert len(seen) == 4 and all(len(s) == n for s in seen)
    assert seen[0] == rows[:n]
    if resample:
        for stage, got in enumerate(seen):
            assert got == [pool[(stage * n + i) % len(pool)] for i in range(n)]
        assert set().union(*map(set, seen)) == set(pool)
    else:
        assert all(s == seen[0] for s in seen)
    assert all(not held_out.intersection(s) for s in seen)


def test_woodfisher_sweep_computes_the_inverse_fisher_diagonals_once(models, digits, monkeypatch):
    """K = AAᵀ and diag(F_λ⁻¹) depend on G and λ only: a sweep's sparsities share them, and each
    point equals a separate run."""
    calls = _count_calls(monkeypatch, "inverse_fisher_diagonals")
    # one λ: points comparable; the plain G: a declined recalibration would solve a second time
    request = PruneRequest(method="woodfisher", samples=SAMPLES, lam=LAM, bn_scale_free=False)
    model = models["digits_cnn"]
    swept = pruning.prune_path(model, digits.calibration, request, [0.5, 0.8], arch="digits_cnn")
    assert len(calls) == 1
    for s, got in zip([0.5, 0.8], swept):
        alone = prune(model, digits.calibration, replace(request, sparsity=s), arch="digits_cnn")
        assert all(torch.equal(got.masks[k], alone.masks[k]) for k in got.masks)
        assert all(torch.allclose(got.weights[k], alone.weights[k], atol=1e-5) for k in got.weights)
    assert len(calls) == 3


def test_gradient_cache_keeps_woodfishers_inverse_fisher_diagonals(models, digits, monkeypatch):
    calls = _count_calls(monkeypatch, "inverse_fisher_diagonals")
    model, cache = models["digits_mlp"], pruning.GradientCache()
    req = PruneRequest(method="woodfisher", sparsity=0.5, samples=SAMPLES)
    prune(model, digits.calibration, req, arch="digits_mlp", cache=cache)
    again = prune(model, digits.calibration, replace(req, sparsity=0.8), arch="digits_mlp", cache=cache)
    assert len(calls) == 1 and again.info.get("gradients_reused") is True
    fresh = prune(model, digits.calibration, replace(req, sparsity=0.8), arch="digits_mlp")
    assert len(calls) == 2 and again.lam == fresh.lam
    assert all(torch.equal(again.masks[k], fresh.masks[k]) for k in fresh.masks)
    prune(model, digits.calibration, replace(req, method="chita", sparsity=0.8), arch="digits_mlp",
          cache=cache)  # another method on the same G keeps them too
    prune(model, digits.calibration, replace(req, sparsity=0.7), arch="digits_mlp", cache=cache)
    assert len(calls) == 2


def test_gradient_cache_reuses_g_and_gives_the_same_result(models, digits, monkeypatch):
    """A second run on the same model and sample skips the gradient pass and equals a fresh run;
    another sample, an in-place edit of the model or another model is a miss."""
    calls = _count_calls(monkeypatch, "fisher_factor")
    model = copy.deepcopy(models["digits_cnn"])
    cache = pruning.GradientCache()
    # (the plain G: a declined recalibration would solve a second time, on its own G)
    req = PruneRequest(method="chita", sparsity=0.6, samples=SAMPLES, lam=LAM, bn_scale_free=False)
    prune(model, digits.calibration, req, arch="digits_cnn", cache=cache)
    second = prune(model, digits.calibration, replace(req, sparsity=0.8), arch="digits_cnn", cache=cache)
    assert len(calls) == 1 and cache.hits == 1 and second.info.get("gradients_reused") is True
    fresh = prune(model, digits.calibration, replace(req, sparsity=0.8), arch="digits_cnn")
    assert len(calls) == 2 and "gradients_reused" not in fresh.info
    assert all(torch.equal(second.masks[k], fresh.masks[k]) for k in fresh.masks)
    assert all(torch.equal(second.weights[k], fresh.weights[k]) for k in fresh.weights)
    assert second.buffers.keys() == fresh.buffers.keys()
    assert all(torch.equal(second.buffers[k], fresh.buffers[k]) for k in fresh.buffers)

    prune(model, digits.calibration, replace(req, seed=2), arch="digits_cnn", cache=cache)
    assert len(calls) == 3  # another sample
    with torch.no_grad():
        next(model.parameters()).mul_(1.0)  # an in-place edit, even one that changes nothing
    prune(model, digits.calibration, replace(req, seed=2), arch="digits_cnn", cache=cache)
    assert len(calls) == 4
    prune(copy.deepcopy(model), digits.calibration, replace(req, seed=2), arch="digits_cnn", cache=cache)
    assert len(calls) == 5  # another model object
    prune(model, digits.calibration, replace(req, method="chita++", stages=2), arch="digits_cnn",
          cache=cache)
    assert cache.get(model, digits.calibration.x, ("anything",)) is None and cache._entry is None


def test_chitapp_path_runs_the_sparsest_schedule_once_and_branches_the_others(models, digits,
                                                                             monkeypatch):
    """A CHITA++ sweep: the sparsest target equals its own run exactly (λ walk and warm starts of
    the branches do not leak into it); a branch takes the main stages below its target, then
    its own schedule's closing stages, its first one on the main schedule's G."""
    calls = _count_calls(monkeypatch, "fisher_factor")
    model = models["digits_cnn"]
    snap = _snapshot(model)
    request = PruneRequest(method="chita++", samples=SAMPLES, stages=6, recalibrate_bn=True)
    swept = pruning.prune_path(model, digits.calibration, request, [0.8, 0.5], arch="digits_cnn")
    _assert_same(model, snap)
    main, branch = swept
    assert main.request.sparsity == 0.8 and branch.request.sparsity == 0.5
    shared = [u for u in chitapp_schedule(0.8, 6) if u < 0.5]  # the main levels below 0.5
    tail = [u for u in chitapp_schedule(0.5, 6) if u > shared[-1]]
    assert len(shared) == 1 and len(tail) == 4  # 0.388, then 0.405 … 0.5 (log schedule)
    assert branch.info["branched_after_stage"] == 1
    assert branch.info["schedule"] == pytest.approx(shared + tail)
    assert len(branch.info["solver"]) == len(tail)
    assert len(calls) == 6 + len(tail) - 1  # separate runs would take 12
    names, sizes = _sizes(model, "digits_cnn")
    assert branch.nonzeros == round(0.5 * sum(sizes)) and main.nonzeros == round(0.2 * sum(sizes))
    alone = prune(model, digits.calibration, replace(request, sparsity=0.8), arch="digits_cnn")
    assert alone.lam == main.lam and alone.objective_trace == main.objective_trace
    # the same λ scored at every stage: each walk started where its own schedule's last one ended
    assert alone.info["lambda_selection"] == main.info["lambda_selection"]
    for k in alone.weights:
        assert torch.equal(alone.weights[k], main.weights[k]) and torch.equal(alone.masks[k], main.masks[k])
    assert alone.buffers.keys() == main.buffers.keys()
    assert all(torch.equal(alone.buffers[k], main.buffers[k]) for k in alone.buffers)


def test_chitapp_path_branch_at_the_dense_start_is_its_own_run(models, digits):
    """A target below the main schedule's first level branches before any stage: its schedule is
    its own, so it equals a separate run."""
    model = models["digits_mlp"]
    request = PruneRequest(method="chita++", samples=SAMPLES, stages=3)
    low, high = pruning.prune_path(model, digits.calibration, request, [0.2, 0.9], arch="digits_mlp")
    alone = prune(model, digits.calibration, replace(request, sparsity=0.2), arch="digits_mlp")
    assert low.info["branched_after_stage"] == 0 and low.info["schedule"] == alone.info["schedule"]
    assert all(torch.equal(alone.weights[k], low.weights[k]) for k in alone.weights)


def test_chitapp_path_cancelled_in_a_branch_leaves_the_model_alone(models, digits):
    model = models["digits_cnn"]
    snap = _snapshot(model)
    token = CancelToken()
    seen: list[str] = []

    shared = [u for u in chitapp_schedule(0.8, 5) if u < 0.5]
    last = len(shared) + len([u for u in chitapp_schedule(0.5, 5) if u > shared[-1]])
    closing = f"stage {last}/{last}"  # the 0.5 branch's closing stage (main's are k/5)
    assert shared and last != 5

    def progress(p) -> None:
        seen.append(p.message)
        if closing in (p.message or ""):
            token.cancel()

    request = PruneRequest(method="chita++", samples=SAMPLES, stages=5, lam=LAM)
    with pytest.raises(Cancelled):
        pruning.prune_path(model, digits.calibration, request, [0.5, 0.8], arch="digits_cnn",
                           progress=progress, cancel=token)
    assert any(closing in (m or "") for m in seen)
    _assert_same(model, snap)


def test_chitapp_stages_write_g_into_the_previous_stages_memory_with_the_same_result(
        models, digits, monkeypatch):
    """After a run's first stage, each stage's G takes the previous stage's memory (no fresh
    allocation), branches of a sweep included, and the results are those of a fresh G per stage
    to the bit. It fails if a stage allocates anew, or if a reused buffer leaks into a result."""
    model = models["digits_cnn"]
    request = PruneRequest(method="chita++", samples=SAMPLES, stages=4)  # λ walked at each stage
    real = pruning.fisher_factor
    calls: list[tuple[int | None, int]] = []

    def spy(*args, out=None, **kw):
        ff = real(*args, out=out, **kw)
        calls.append((None if out is None else out.data_ptr(), ff.A.data_ptr()))
        return ff

    monkeypatch.setattr(pruning, "fisher_factor", spy)
    reused = pruning.prune_path(model, digits.calibration, request, [0.5, 0.8], arch="digits_cnn")
    assert calls[0][0] is None  # the first stage allocates
    assert sum(o is not None for o, _ in calls) >= 3  # the main schedule's later stages do not
    assert all(a == o for o, a in calls if o is not None)  # and write where they were told
    assert all(o == calls[i][1] for i, (o, _) in enumerate(calls[1:]) if o is not None)

    def fresh(*args, out=None, **kw):
        return real(*args, **kw)

    monkeypatch.setattr(pruning, "fisher_factor", fresh)
    apart = pruning.prune_path(model, digits.calibration, request, [0.5, 0.8], arch="digits_cnn")
    for a, b in zip(reused, apart):
        assert a.lam == b.lam and a.objective_trace == b.objective_trace
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
        assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)


def test_chitapp_reports_the_whole_run_as_one_stage_for_an_eta(models, digits):
    """Every report of a CHITA++ run (branches included) is stage "CHITA++", determinate, rising
    over the stage solves, with the current stage named in the message."""
    seen = []
    request = PruneRequest(method="chita++", samples=SAMPLES, stages=5, lam=LAM)
    pruning.prune_path(models["digits_mlp"], digits.calibration, request, [0.5, 0.8],
                       arch="digits_mlp", progress=seen.append)
    final = seen.pop()
    assert final.stage == "done"
    shared = [u for u in chitapp_schedule(0.8, 5) if u < 0.5]
    tail = [u for u in chitapp_schedule(0.5, 5) if u > shared[-1]]
    assert len(shared) == 1 and len(tail) == 3
    units = 5 + 3  # main schedule to 0.8, and the 0.5 branch's three closing stages
    assert {p.stage for p in seen} == {"CHITA++"} and {p.total for p in seen} == {units}
    done = [p.done for p in seen]
    assert done == sorted(done) and done[0] <= 0.5 and done[-1] == units - 0.5
    first = f"stage 1/5 (sparsity {chitapp_schedule(0.8, 5)[0]:.3f})"
    assert any(p.message.startswith(first + ": per-sample gradients") for p in seen)
    assert any(p.message.startswith("stage 4/4 (sparsity 0.500)") for p in seen)


# --------------------------------------------------------------------------- mini-batch rows


def test_images_per_row_averages_b_images_per_row_none_of_them_held_out(models, digits, monkeypatch):
    """B = 3: G's n rows take the first 3n calibration images, the held-out images follow them,
    the refinement's gradients take every image but the held-out ones, and k nonzeros come out
    (first-order on)."""
    calls = _count_calls(monkeypatch, "fisher_factor")
    req = PruneRequest(method="chita", sparsity=0.8, samples=SAMPLES, lam=LAM, images_per_row=3,
                       first_order=True, refine_steps=1)
    model = models["digits_mlp"]
    snap = _snapshot(model)
    res = prune(model, digits.calibration, req, arch="digits_mlp")
    _assert_same(model, snap)
    assert res.info["images_per_row"] == 3 and res.info["samples"] == SAMPLES
    assert res.nonzeros == round(0.2 * res.total)
    assert res.info["final"][-1]["objective_lower_bound"] is None  # no floor with gᵀ(w − w̄)
    (args, kw), (r_args, r_kw) = calls[0], calls[1]
    assert torch.equal(args[1], digits.calibration.x[: 3 * SAMPLES]) and kw["images_per_row"] == 3
    # the refinement: G's images, then the ones after the held-out block, 5 per row
    x = digits.calibration.x
    per_row = (len(x) - pruning.HOLDOUT) // SAMPLES  # 1258 images, 500 held out: 5
    assert r_kw["images_per_row"] == per_row == res.info["refine_images_per_row"] == 5
    end = 3 * SAMPLES + pruning.HOLDOUT
    assert torch.equal(r_args[1], torch.cat([x[:3 * SAMPLES], x[end:end + (per_row - 3) * SAMPLES]]))
    assert r_kw["columns"].sum() == res.nonzeros  # the refinement: kept columns only
    ctx = pruning._Context.build(model, digits.calibration, req, "digits_mlp", None, None)
    assert torch.equal(ctx.x_h, x[3 * SAMPLES:end])
    held = {tuple(row.flatten().tolist()) for row in ctx.x_h}
    assert not any(tuple(row.flatten().tolist()) in held for row in ctx.x_r)


def test_images_per_row_is_lowered_to_what_the_calibration_set_holds(models, digits):
    req = PruneRequest(method="obd", sparsity=0.5, samples=SAMPLES, images_per_row=50)
    res = prune(models["digits_mlp"], digits.calibration, req, arch="digits_mlp")
    fits = (len(digits.calibration.x) - pruning.HOLDOUT) // SAMPLES  # 1258 images: 5
    assert res.info["images_per_row"] == fits and res.info["images_per_row_asked"] == 50
    one = prune(models["digits_mlp"], digits.calibration, replace(req, images_per_row=1),
                arch="digits_mlp")
    assert "images_per_row" not in one.info
    plain = prune(models["digits_mlp"], digits.calibration, replace(req, method="magnitude"),
                  arch="digits_mlp")
    assert "images_per_row" not in plain.info  # no gradients taken: nothing to average
    refined = prune(models["digits_mlp"], digits.calibration,
                    replace(req, method="magnitude", images_per_row=2, refine_steps=1),
                    arch="digits_mlp")
    assert refined.info["images_per_row"] == 2  # asked for, and where the held-out block starts
    assert refined.info["refine_images_per_row"] == fits  # the refinement takes all it can


@pytest.mark.parametrize("bad", [0, pruning.MAX_IMAGES_PER_ROW + 1])
def test_images_per_row_outside_its_range_is_refused_with_the_field(models, digits, bad):
    with pytest.raises(StudioError) as err:
        prune(models["digits_mlp"], digits.calibration,
              PruneRequest(method="chita", sparsity=0.5, images_per_row=bad), arch="digits_mlp")
    assert err.value.field == "images per row"


def test_gradient_cache_keeps_one_images_per_row_apart_from_another(models, digits, monkeypatch):
    calls = _count_calls(monkeypatch, "fisher_factor")
    cache = pruning.GradientCache()
    req = PruneRequest(method="chita", sparsity=0.6, samples=SAMPLES, lam=LAM)
    model = models["digits_mlp"]
    prune(model, digits.calibration, req, arch="digits_mlp", cache=cache)
    prune(model, digits.calibration, replace(req, images_per_row=2), arch="digits_mlp", cache=cache)
    assert len(calls) == 2 and cache.hits == 0
    again = prune(model, digits.calibration, replace(req, images_per_row=2, first_order=True,
                                                     sparsity=0.7), arch="digits_mlp", cache=cache)
    fresh = prune(model, digits.calibration, replace(req, images_per_row=2, first_order=True,
                                                     sparsity=0.7), arch="digits_mlp")
    assert cache.hits == 1 and again.info.get("gradients_reused") is True
    assert all(torch.equal(again.weights[k], fresh.weights[k]) for k in fresh.weights)


def test_saliency_is_half_the_fisher_diagonal_times_the_squared_weight(models, digits):
    """The importance view's numbers: ½·F_jj·w_j² from per-sample gradients, per layer."""
    from core.fisher import per_sample_gradients

    model = models["digits_mlp"]
    sal = pruning.saliency(model, digits.calibration, samples=64, arch="digits_mlp")
    names = default_layers(model, "digits_mlp")
    G = per_sample_gradients(model, digits.calibration.x[:64], digits.calibration.y[:64], names).G
    params = dict(model.named_parameters())
    flat = 0.5 * (G.double() ** 2).mean(0) * torch.cat([params[n].detach().reshape(-1) for n in names]).double() ** 2
    assert list(sal) == names
    got = torch.cat([sal[n].reshape(-1) for n in names]).double()
    assert torch.allclose(got, flat, rtol=1e-5, atol=1e-12)


# --------------------------------------------------------------------------- BatchNorm-aware G


def test_chita_with_recalibration_drops_the_channel_scales_from_g(run, models, digits, monkeypatch):
    """Single-stage CHITA and WoodFisher on a BatchNorm model with recalibration remove, per
    conv channel, the direction that recalibration makes free; OBD, CHITA++, no recalibration,
    or the option off leave G alone. The flag is part of the gradient cache's key."""
    convs = [m for m in models["digits_cnn"].modules() if isinstance(m, torch.nn.Conv2d)]
    on, unchanged = run("digits_cnn", method="chita", sparsity=0.8, lam=LAM)
    assert unchanged and on.info["bn_scale_free_channels"] == sum(c.out_channels for c in convs)
    off, _ = run("digits_cnn", method="chita", sparsity=0.8, lam=LAM, bn_scale_free=False)
    no_recal, _ = run("digits_cnn", method="chita", sparsity=0.8, lam=LAM, recalibrate_bn=False)
    for r in (off, no_recal):
        assert "bn_scale_free_channels" not in r.info
    assert any(not torch.equal(on.weights[k], off.weights[k]) for k in on.weights)
    assert on.nonzeros == off.nonzeros
    for method in ("obd", "chita++"):
        other, _ = run("digits_cnn", method=method, sparsity=0.8, lam=LAM, stages=3)
        assert "bn_scale_free_channels" not in other.info
    wf, _ = run("digits_cnn", method="woodfisher", sparsity=0.8, lam=LAM)
    wf_off, _ = run("digits_cnn", method="woodfisher", sparsity=0.8, lam=LAM, bn_scale_free=False)
    assert wf.info["bn_scale_free_channels"] == on.info["bn_scale_free_channels"]
    assert "bn_scale_free_channels" not in wf_off.info
    assert any(not torch.equal(wf.weights[k], wf_off.weights[k]) for k in wf.weights)
    forced, _ = run("digits_cnn", method="obd", sparsity=0.8, bn_scale_free=True)
    assert forced.info["bn_scale_free_channels"] == on.info["bn_scale_free_channels"]
    mlp, _ = run("digits_mlp", method="chita", sparsity=0.8, lam=LAM)
    assert "bn_scale_free_channels" not in mlp.info  # no BatchNorm, nothing to recalibrate
    # what the CLI and the GUI say about it
    d = on.info["recalibration"]
    refreshed = "stale statistics refreshed before pruning; " if on.info["bn_refreshed_before"] else ""
    assert describe_batchnorm(on.info) == (
        f"BatchNorm: {refreshed}statistics recomputed after pruning (held-out loss "
        f"{d['holdout_loss_before']:.4g} → {d['holdout_loss_after']:.4g}); gradients without the "
        f"scales of the {on.info['bn_scale_free_channels']} conv channels a recalibration frees.")
    assert describe_batchnorm(no_recal.info).endswith("statistics not recomputed after pruning (recalibration off).")
    assert "gradients without" not in describe_batchnorm(off.info)
    assert describe_batchnorm(mlp.info) == ""

    calls = _count_calls(monkeypatch, "fisher_factor")
    model, cache = copy.deepcopy(models["digits_cnn"]), pruning.GradientCache()
    req = PruneRequest(method="chita", sparsity=0.8, samples=SAMPLES, lam=LAM)
    first = prune(model, digits.calibration, req, arch="digits_cnn", cache=cache)
    assert first.info["recalibration"]["applied"]
    prune(model, digits.calibration, replace(req, recalibrate_bn=False), arch="digits_cnn", cache=cache)
    assert len(calls) == 2 and cache.hits == 0  # projected G is not reused without recalibration
    again = prune(model, digits.calibration, replace(req, recalibrate_bn=False, sparsity=0.9),
                  arch="digits_cnn", cache=cache)
    assert len(calls) == 2 and cache.hits == 1 and "bn_scale_free_channels" not in again.info


def test_a_declined_recalibration_solves_again_on_the_plain_g(models, digits):
    """At low sparsity the held-out check declines the recalibration the channel-scale-free G
    assumed: the run then equals a run with bn_scale_free=False, and says so. In a sweep the
    next point takes the channel-scale-free G again."""
    model = models["digits_cnn"]
    req = PruneRequest(method="chita", sparsity=0.3, samples=SAMPLES)
    declined = prune(model, digits.calibration, req, arch="digits_cnn")
    plain = prune(model, digits.calibration, replace(req, bn_scale_free=False), arch="digits_cnn")
    assert declined.info["recalibration"]["applied"] is False
    assert declined.info["bn_scale_free_declined"] == 48 and "bn_scale_free_channels" not in declined.info
    assert all(torch.equal(declined.weights[k], plain.weights[k]) for k in plain.weights)
    assert declined.lam == plain.lam and declined.timings["total"] >= plain.timings["gradients"]
    d = declined.info["recalibration"]
    assert describe_batchnorm(declined.info).endswith(
        f"statistics recomputed after pruning were declined (held-out loss "
        f"{d['holdout_loss_after']:.4g} with them, {d['holdout_loss_before']:.4g} without); so the "
        "run was solved again on the gradients with the channel scales.")

    low, high = pruning.prune_path(model, digits.calibration, req, [0.3, 0.8], arch="digits_cnn")
    alone = prune(model, digits.calibration, replace(req, sparsity=0.8), arch="digits_cnn")
    assert low.info["bn_scale_free_declined"] == 48
    assert high.info["bn_scale_free_channels"] == 48 and high.info["recalibration"]["applied"]
    assert "bn_scale_free_declined" not in high.info
    assert all(torch.equal(low.weights[k], declined.weights[k]) for k in low.weights)
    assert high.nonzeros == alone.nonzeros


def test_batchnorm_statistics_images_are_chosen_on_held_out_loss(models, digits):
    """bn_augment="auto" refreshes the dense statistics on the images as they are and on cropped
    and flipped copies, keeps the one with the lower held-out loss for every later
    recalibration, and refreshes only if that beats the stored statistics. An explicit choice
    scores only its own kind."""
    from core.augment import CropFlip
    from core.batchnorm import recalibrate_batchnorm

    model = models["digits_cnn"]
    req = PruneRequest(method="magnitude", sparsity=0.8, samples=SAMPLES)
    auto = prune(model, digits.calibration, req, arch="digits_cnn")
    losses = auto.info["bn_refresh_losses"]
    assert set(losses) == {"stored", "none", "crop_flip"} and losses["none"] != losses["crop_flip"]
    assert auto.info["bn_augment"] == min(("none", "crop_flip"), key=losses.get)
    assert auto.info["bn_refreshed_before"] == (
        losses[auto.info["bn_augment"]] < (1 - pruning.REFRESH_MARGIN) * losses["stored"])
    for kind in ("none", "crop_flip"):
        r = prune(model, digits.calibration, replace(req, bn_augment=kind), arch="digits_cnn")
        assert r.info["bn_augment"] == kind and set(r.info["bn_refresh_losses"]) == {"stored", kind}
        assert r.info["bn_refresh_losses"][kind] == pytest.approx(losses[kind], rel=1e-6)
        assert r.info["recalibration"]["applied"]
        assert ("cropped and mirrored" in describe_batchnorm(r.info)) == (kind == "crop_flip")
        # the recalibration after pruning ran on the chosen images: redo it by hand
        ctx = pruning._Context.build(model, digits.calibration, replace(req, bn_augment=kind),
                                     "digits_cnn", None, None)
        by_hand = pruning.apply_result(model, r)
        recalibrate_batchnorm(by_hand, ctx.bn_images,
                              transform=CropFlip.for_images(ctx.bn_images) if kind == "crop_flip" else None)
        want = dict(by_hand.named_buffers())
        for name, value in r.buffers.items():
            assert torch.allclose(value.float(), want[name].float(), atol=1e-5), (kind, name)
    with pytest.raises(StudioError, match="bn augment"):
        prune(model, digits.calibration, replace(req, bn_augment="mixup"), arch="digits_cnn")


def test_only_stale_batchnorm_statistics_are_refreshed_before_pruning(models, digits):
    """The demo CNN's own statistics are kept (a refresh moves its held-out loss by less than
    REFRESH_MARGIN); the same network with its running variances scrambled is refreshed, and
    the refresh undoes most of the damage."""
    model = models["digits_cnn"]
    req = PruneRequest(method="magnitude", sparsity=0.5, samples=SAMPLES, recalibrate_bn=False)
    fine = prune(model, digits.calibration, req, arch="digits_cnn")
    assert fine.info["bn_refreshed_before"] is False and fine.buffers == {}
    stale = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in stale.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.mul_(torch.rand(m.num_features, generator=g) * 8 + 0.1)
    refreshed = prune(stale, digits.calibration, replace(req, sparsity=0.0), arch="digits_cnn")
    losses = refreshed.info["bn_refresh_losses"]
    assert refreshed.info["bn_refreshed_before"] is True
    assert min(losses["none"], losses["crop_flip"]) < (1 - pruning.REFRESH_MARGIN) * losses["stored"]
    before = evaluate(stale, digits.evaluation).loss
    after = evaluate(pruning.apply_result(stale, refreshed), digits.evaluation).loss
    assert after < 0.5 * before  # on test images, which the check never saw
    # decided on REFRESH_CHECK held-out images; the statistics kept come from all BN_IMAGES
    from core.augment import CropFlip
    from core.batchnorm import recalibrate_batchnorm

    ctx = pruning._Context.build(stale, digits.calibration, replace(req, sparsity=0.0),
                                 "digits_cnn", None, None, refresh_bn=False)
    assert len(ctx.x_h) > pruning.REFRESH_CHECK and len(ctx.bn_images) > pruning.REFRESH_CHECK
    assert losses["stored"] == pytest.approx(
        pruning._mean_loss(stale, ctx.x_h[:pruning.REFRESH_CHECK], ctx.y_h[:pruning.REFRESH_CHECK]), rel=1e-6)
    by_hand = copy.deepcopy(stale)
    kind = refreshed.info["bn_augment"]
    recalibrate_batchnorm(by_hand, ctx.bn_images,
                          transform=CropFlip.for_images(ctx.bn_images) if kind == "crop_flip" else None)
    want = dict(by_hand.named_buffers())
    for name, value in refreshed.buffers.items():
        assert torch.allclose(value.float(), want[name].float(), atol=1e-5), name


def test_the_refresh_check_decision_is_reused_from_the_cache(models, digits, monkeypatch):
    """A GradientCache keeps the BatchNorm refresh check's decision for any method: a second
    run on the same model, images, seed and sample skips the check and gives the same result,
    stale statistics included (their refresh is restored, not recomputed); another seed, or a
    model changed in place, checks again."""
    checks = []
    real = pruning._Context._refresh_check
    monkeypatch.setattr(pruning._Context, "_refresh_check",
                        lambda self: (checks.append(self.request.seed), real(self))[1])
    stale = copy.deepcopy(models["digits_cnn"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in stale.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.mul_(torch.rand(m.num_features, generator=g) * 8 + 0.1)
    cache = pruning.GradientCache()
    req = PruneRequest(method="magnitude", sparsity=0.6, samples=SAMPLES, recalibrate_bn=False)
    first = prune(stale, digits.calibration, req, arch="digits_cnn", cache=cache)
    again = prune(stale, digits.calibration, req, arch="digits_cnn", cache=cache)
    assert checks == [0] and cache.check_hits == 1
    assert first.info["bn_refreshed_before"] is True and "bn_check_reused" not in first.info
    assert again.info["bn_check_reused"] is True
    for k in pruning._Context.CHECK_RECORD:
        assert again.info[k] == first.info[k]
    assert set(again.buffers) == set(first.buffers) and first.buffers
    assert all(torch.equal(again.buffers[k], first.buffers[k]) for k in first.buffers)
    x = digits.evaluation.x[:64]
    with torch.no_grad():
        assert torch.equal(pruning.apply_result(stale, again)(x), pruning.apply_result(stale, first)(x))
    # a gradient method on the same sample reuses it too (its G is its own)
    chita = prune(stale, digits.calibration, replace(req, method="chita", lam=LAM), arch="digits_cnn",
                  cache=cache)
    assert checks == [0] and chita.info["bn_check_reused"] is True
    prune(stale, digits.calibration, replace(req, seed=1), arch="digits_cnn", cache=cache)
    assert checks == [0, 1]
    with torch.no_grad():
        next(m for m in stale.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean.add_(0.01)
    changed = prune(stale, digits.calibration, req, arch="digits_cnn", cache=cache)
    assert checks == [0, 1, 0] and "bn_check_reused" not in changed.info
    cache.clear()  # drops gradients only: the decisions stay
    prune(stale, digits.calibration, req, arch="digits_cnn", cache=cache)
    assert checks == [0, 1, 0]


# --------------------------------------------------------------------------- CHITA's update scale
@pytest.mark.parametrize("method", ["chita", "woodfisher"])
def test_fixed_update_scale_moves_the_kept_weights_by_that_fraction_of_the_update(run, models, method):
    """α = 0.5 keeps the method's mask and puts each kept weight halfway between w̄ and the
    method's; α = 0 keeps w̄ itself on that mask; both keep exactly k nonzeros."""
    model = models["digits_mlp"]
    dense = dict(model.named_parameters())
    whole, _ = run("digits_mlp", method=method, sparsity=0.8, lam=LAM)
    half, unchanged = run("digits_mlp", method=method, sparsity=0.8, lam=LAM, update_scale=0.5)
    none, _ = run("digits_mlp", method=method, sparsity=0.8, lam=LAM, update_scale=0.0)
    assert unchanged
    assert "update_scale" not in whole.info  # the default, α = 1, is the paper's CHITA as before
    assert half.info["update_scale"]["chosen"] == 0.5 and "grid" not in half.info["update_scale"]
    moved = False
    for name, w in whole.weights.items():
        mask = whole.masks[name]
        assert torch.equal(half.masks[name], mask) and torch.equal(none.masks[name], mask)
        wbar = dense[name].detach()
        torch.testing.assert_close(half.weights[name], mask * (wbar + 0.5 * (w - wbar)))
        torch.testing.assert_close(none.weights[name], mask * wbar)
        moved |= not torch.allclose(w, mask * wbar)
    assert moved, "the update is not zero here, so the three runs differ"
    for r in (half, none):
        assert r.nonzeros == whole.nonzeros == global_budget(r.total, 0.8)
    assert describe_update_scale(half.info) == "α = 0.5 of the weight update on the kept weights (fixed)."


def test_auto_update_scale_walks_down_from_the_whole_update_on_held_out_error(run):
    """update_scale=None without recalibration: α by a walk from 1 down UPDATE_SCALES, each
    candidate scored on every held-out image, the one chosen lowest in (error, loss) of those
    scored, and a walk, not a scan: the scored candidates are a prefix of the grid."""
    result, unchanged = run("digits_mlp", method="chita", sparsity=0.95, lam=LAM, update_scale=None)
    assert unchanged
    rec = result.info["update_scale"]
    assert rec["grid"] == list(UPDATE_SCALES) and rec["grid"][0] == 1.0
    scored = [i for i, e in enumerate(rec["holdout_error"]) if e is not None]
    assert scored == list(range(len(scored))) and len(scored) >= 2
    key = {i: (rec["holdout_error"][i], rec["holdout_loss"][i]) for i in scored}
    best = min(scored, key=key.__getitem__)
    assert rec["chosen"] == rec["grid"][best]
    assert best == len(scored) - 1 or best == len(scored) - 2  # stopped at the first rise
    assert result.nonzeros == global_budget(result.total, 0.95)
    assert "update_scale" in result.timings
    assert describe_update_scale(result.info).startswith(f"α = {rec['chosen']:g} of the weight update")


def test_auto_update_scale_keeps_the_whole_update_when_batchnorm_is_recalibrated(run):
    result, _ = run("digits_cnn", method="chita", sparsity=0.8, lam=LAM, update_scale=None)
    whole, _ = run("digits_cnn", method="chita", sparsity=0.8, lam=LAM)
    assert result.info["recalibrated"] and result.info["update_scale"]["chosen"] == 1.0
    assert "update_scale" not in result.timings  # nothing scored
    for name, w in whole.weights.items():
        assert torch.equal(result.weights[name], w)
    assert describe_update_scale(result.info) == (
        "α = 1, the whole weight update: auto keeps it when BatchNorm is recalibrated.")
    assert describe_update_scale(whole.info) == ""


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_update_scale_outside_zero_one_is_refused(models, digits, bad):
    with pytest.raises(StudioError) as err:
        prune(models["digits_mlp"], digits.calibration, PruneRequest(method="chita", update_scale=bad))
    assert err.value.field == "update scale" and "auto" in str(err.value.fix)


def test_chitapp_auto_update_scale_chooses_alpha_at_every_stage_a_recalibration_does_not_follow(run):
    """CHITA++ with update_scale=None walks α after each stage's solve, on held-out error; on a
    BatchNorm model that recalibrates after its last stage only, the last stage keeps α = 1."""
    mlp, unchanged = run("digits_mlp", method="chita++", sparsity=0.9, stages=3, lam=LAM,
                         update_scale=None)
    assert unchanged and mlp.nonzeros == global_budget(mlp.total, 0.9)
    stages = mlp.info["update_scale_stages"]
    assert len(stages) == 3 and all(r["chosen"] in r["grid"] for r in stages)
    assert describe_update_scale(mlp.info).startswith("α chosen per CHITA++ stage on held-out")
    cnn, _ = run("digits_cnn", method="chita++", sparsity=0.9, stages=3, lam=LAM, update_scale=None)
    stages = cnn.info["update_scale_stages"]
    assert cnn.info["recalibrated"] and len(stages) == 3
    assert all("grid" in r for r in stages[:-1])
    assert stages[-1] == {"sparsity": 0.9, "chosen": 1.0, "kept_whole": "BatchNorm is recalibrated"}


def test_chitapp_fixed_update_scale_applies_at_every_stage(run):
    result, _ = run("digits_mlp", method="chita++", sparsity=0.9, stages=3, lam=LAM, update_scale=0.5)
    assert [r["chosen"] for r in result.info["update_scale_stages"]] == [0.5, 0.5, 0.5]
    assert result.nonzeros == global_budget(result.total, 0.9)
    assert describe_update_scale(result.info) == "α = 0.5 of the weight update at every CHITA++ stage (fixed)."


def test_obd_on_a_network_whose_g_does_not_fit_streams_its_diagonal(models, digits, monkeypatch):
    """OBD reads only diag(F): where the n×p G is over the memory budget it is summed a block
    of images at a time and gives the same mask; CHITA, which needs G, still refuses."""
    import core.fisher as fisher

    model = models["digits_cnn"]
    request = PruneRequest(method="obd", sparsity=0.7, samples=SAMPLES, seed=0)
    whole = prune(model, digits.calibration, request)
    assert "obd_streamed" not in whole.info
    p = sum(int(m.numel()) for m in whole.masks.values())
    monkeypatch.setattr(fisher, "available_memory_bytes", lambda: 2 * (SAMPLES // 2) * p * 4 * 1.5)
    streamed = prune(model, digits.calibration, request)  # G of SAMPLES rows: twice the budget
    assert streamed.info["obd_streamed"] is True
    for name, mask in whole.masks.items():
        assert torch.equal(streamed.masks[name], mask), name
    with pytest.raises(StudioError, match="samples"):
        prune(model, digits.calibration, replace(request, method="chita", lam=LAM))


def test_torchscript_models_prune_like_the_modules_they_were_scripted_from(digits, models):
    """CHITA on a TorchScript model (per-image gradient loop) keeps the plain module's mask; a
    scripted network's BatchNorm is used as stored, and the run says so."""
    req = PruneRequest(method="chita", sparsity=0.7, samples=SAMPLES, lam=LAM)
    plain = prune(models["digits_mlp"], digits.calibration, req)
    scripted = prune(torch.jit.script(copy.deepcopy(models["digits_mlp"])), digits.calibration, req)
    agree = sum(int((plain.masks[k] == scripted.masks[k]).sum()) for k in plain.masks)
    assert scripted.nonzeros == plain.nonzeros and agree >= 0.995 * plain.total
    assert scripted.objective_trace[-1] == pytest.approx(plain.objective_trace[-1], rel=1e-4)
    cnn = prune(torch.jit.script(copy.deepcopy(models["digits_cnn"])), digits.calibration, req)
    assert cnn.info["bn_torchscript"] and not cnn.buffers
    assert "TorchScript or .pt2 model's BatchNorm layers are not recalibrated" in describe_batchnorm(cnn.info)
    batch = torch.export.Dim("batch", min=1, max=4096)
    exported = torch.export.export(copy.deepcopy(models["digits_cnn"]).eval(), (digits.calibration.x[:2],),
                                   dynamic_shapes=({0: batch},)).module()
    graph = prune(exported, digits.calibration, req)
    assert graph.info["bn_torchscript"] and not graph.buffers


@pytest.mark.parametrize("method", ["magnitude", "chita"])
def test_keep_first_and_last_leave_those_layers_dense(run, models, method):
    """keep_first / keep_last drop the first / last prunable layer (model order) from the run:
    the budget is the other layers' (exactly k of them kept), the kept layers have no mask and
    keep their weights when the result is applied, and the run names them (info["kept_dense"])."""
    model = models["digits_cnn"]
    every = default_layers(model, "digits_cnn")
    for first, last in ((True, False), (False, True), (True, True)):
        result, unchanged = run("digits_cnn", method=method, sparsity=0.8, keep_first=first, keep_last=last)
        dense = [every[0]] * first + [every[-1]] * last
        names = [n for n in every if n not in dense]
        assert pruning.request_layers(model, result.request, "digits_cnn") == names and unchanged
        sizes = [dict(model.named_parameters())[n].numel() for n in names]
        assert result.total == sum(sizes) and result.nonzeros == round(0.2 * sum(sizes))
        _check_masks_and_weights(result, model, names, sizes)
        assert result.info["kept_dense"] == dense
        pruned = pruning.apply_result(model, result)
        for n in dense:
            assert torch.equal(pruned.get_parameter(n), model.get_parameter(n))
    # an explicit list: "first" and "last" in model order, whatever order it names them in
    req = PruneRequest(layers=(every[2], every[0], every[1]), keep_first=True)
    assert pruning.request_layers(model, req, "digits_cnn") == [every[2], every[1]]
    with pytest.raises(StudioError, match="leaves no layer to prune") as err:
        pruning.request_layers(model, PruneRequest(layers=(every[0],), keep_last=True), "digits_cnn")
    assert err.value.field == "layers"


def test_a_sparsity_under_the_models_own_zeros_is_refused(models, digits):
    """A model pruned before keeps its zeros: asking a lower sparsity would count zeros as kept
    weights (the reported nonzeros and sparsity would be wrong). Refused before any work,
    naming the least sparsity that can be asked, globally and per layer, in a sweep too; at or
    above it the run holds exactly k nonzeros."""
    model = models["digits_cnn"]
    pruned = apply_result(model, prune(model, digits.calibration, PruneRequest(method="magnitude", sparsity=0.8)))
    for method in ("magnitude", "chita"):
        with pytest.raises(StudioError, match=r"already have 80\.0% zeros .* than the 70\.0% asked") as err:
            prune(pruned, digits.calibration, PruneRequest(method=method, sparsity=0.7, samples=SAMPLES))
        assert err.value.field == "sparsity" and "at least 80.0%" in err.value.fix
    with pytest.raises(StudioError, match="one of its layers already has"):
        prune(pruned, digits.calibration, PruneRequest(method="magnitude", sparsity=0.8, scope="layer"))
    with pytest.raises(StudioError, match="than the 50.0% asked"):
        pruning.prune_path(pruned, digits.calibration, PruneRequest(method="magnitude"), [0.9, 0.5])
    for method in ("obd", "chita"):
        result = prune(pruned, digits.calibration, PruneRequest(method=method, sparsity=0.85, samples=SAMPLES))
        actual = sum(int((w != 0).sum()) for w in result.weights.values())
        assert actual == result.nonzeros == round(0.15 * result.total)
