"""Pruning results on disk (core.result_io): plain data, read back without running code."""

from __future__ import annotations

import pickle

import pytest
import torch

from core.data import load_bundle
from core.demo import load_demo
from core.errors import StudioError
from core.evaluate import evaluate, paired_difference
from core.pruning import PruneRequest, apply_result, prune
from core.result_io import (
    eval_from_state,
    eval_state,
    fingerprint,
    load_states,
    result_from_state,
    result_state,
    save_states,
)


def test_a_result_and_its_evaluation_come_back_equal_from_a_weights_only_file(tmp_path):
    loaded, bundle = load_demo("digits_cnn"), load_bundle("digits")  # BatchNorm: buffers too
    res = prune(loaded.model, bundle.calibration,
                PruneRequest(method="chita++", sparsity=0.8, samples=64, stages=3))
    ev = evaluate(apply_result(loaded.model, res), bundle.evaluation)
    path = tmp_path / "runs.pt"
    save_states(path, {"runs": [{"result": result_state(res), "eval": eval_state(ev)}]})
    assert [p.name for p in tmp_path.iterdir()] == ["runs.pt"]  # no temporary file left
    state = load_states(path)["runs"][0]
    back, ev_back = result_from_state(state["result"]), eval_from_state(state["eval"])
    assert back.request == res.request and back.lam == res.lam and back.nonzeros == res.nonzeros
    assert back.objective_trace == res.objective_trace and back.layer_sparsity == res.layer_sparsity
    for part in ("weights", "masks", "buffers"):
        a, b = getattr(res, part), getattr(back, part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert back.info["schedule"] == res.info["schedule"] and back.info["final"] == res.info["final"]
    assert ev_back == ev and torch.equal(ev_back.hits, ev.hits) and torch.equal(ev_back.predictions, ev.predictions)
    assert torch.equal(ev_back.top_classes, ev.top_classes)
    assert torch.equal(ev_back.top_probabilities, ev.top_probabilities)
    again = evaluate(apply_result(loaded.model, back), bundle.evaluation)
    assert again.accuracy == ev.accuracy
    assert paired_difference(ev_back, ev).difference == 0.0  # hits kept: paired comparisons work


def test_fingerprint_changes_with_any_weight_and_with_the_images():
    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    x, y = bundle.evaluation.x, bundle.evaluation.y
    key = fingerprint(loaded.model, x, y)
    assert key == fingerprint(load_demo("digits_mlp").model, x.clone(), y.clone())
    other = load_demo("digits_mlp").model
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-6
    assert fingerprint(other, x, y) != key
    assert fingerprint(loaded.model, x[1:], y[1:]) != key
    cnn = load_demo("digits_cnn").model  # BatchNorm: 0-d buffers (num_batches_tracked) too
    assert fingerprint(cnn, x, y) == fingerprint(load_demo("digits_cnn").model, x, y) != key


class _Payload:
    """A pickle that would run code when loaded without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_with_code_in_it_is_refused_and_nothing_runs(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": 1, "runs": [_Payload()]}, fh, protocol=2)
    with pytest.raises(StudioError) as err:
        load_states(path)
    assert str(path) in str(err.value) and err.value.field == "file"
    assert "this must never run" not in capsys.readouterr().out
    torch.save({"format": 99, "runs": []}, path)
    with pytest.raises(StudioError, match="results format 99") as err:
        load_states(path)
    assert err.value.field == "format"


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "runs.pt"
    save_states(path, {"runs": [1, 2]})

    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save_states(path, {"runs": [3]})
    monkeypatch.undo()
    assert load_states(path)["runs"] == [1, 2] and [p.name for p in tmp_path.iterdir()] == ["runs.pt"]
