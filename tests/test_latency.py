"""Timing ONNX files in onnxruntime: alternating rounds, medians that tell a slow file from a fast one."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from core.cli import main
from core.errors import Cancelled
from core.export import onnx_model_bytes
from core.latency import measure_latency
from core.progress import CancelToken


def _mlp(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10)).eval()


def test_a_file_with_more_work_takes_longer_and_the_figures_are_consistent():
    x = torch.randn(4, 1, 8, 8)
    small, big = onnx_model_bytes(_mlp(16), x), onnx_model_bytes(_mlp(2048), x)
    seen = []
    fast, slow = measure_latency([small, big], x[:2], budget_s=0.5, rounds=3,
                                 progress=lambda p: seen.append(p.stage))
    for lat in (fast, slow):
        assert lat.batch == 2 and lat.runs >= 3 and lat.q1_ms <= lat.median_ms <= lat.q3_ms
        assert lat.per_image_ms == pytest.approx(lat.median_ms / 2)
        assert "ms per batch of 2" in lat.describe()
    assert fast.runs == slow.runs  # the same runs per round for every file: alternating rounds
    assert slow.median_ms > 3 * fast.median_ms  # a 2048-wide MLP against a 16-wide one (measured 10×+)
    assert "latency" in seen
    assert measure_latency([], x) == []


def test_cancel_stops_the_timing():
    x = torch.randn(1, 1, 8, 8)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        measure_latency([onnx_model_bytes(_mlp(16), x)], x, cancel=token)


def test_prune_times_the_written_file_beside_the_dense_model(capsys, tmp_path):
    out = tmp_path / "pruned.onnx"
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9",
                 "--out", str(out), "--latency", "--latency-batch", "3", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    lat = json.loads(stdout)["latency"]
    assert lat["batch"] == 3 and lat["runs"] > 0
    assert lat["ratio_to_dense"] == pytest.approx(lat["median_ms"] / lat["dense_median_ms"])
    assert lat["q1_ms"] <= lat["median_ms"] <= lat["q3_ms"]

    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9", "--latency"])
    _, err = capsys.readouterr()
    assert code == 2 and "--latency" in err and "--out" in err

    code = main(["export", str(out), "--out", str(tmp_path / "again.onnx"), "--latency"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "Latency:   " in stdout and "ms per batch of 1" in stdout
