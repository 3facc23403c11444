"""Layer sensitivity: each layer pruned alone, scored against dense on calibration images."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from core.cli import main as cli_main
from core.data import ImageSet
from core.errors import Cancelled
from core.progress import CancelToken
from core.sensitivity import layer_sensitivity, scan_images


class _TwoPaths(nn.Module):
    """``used`` feeds the output; ``unused`` is multiplied by zero before it does."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(8, 10)
        self.unused = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.used(x) + 0.0 * self.unused(x)


def _images(n: int = 300) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 2, 4, generator=g)
    return ImageSet(x=x, y=torch.randint(0, 10, (n,), generator=g), source="random")


def test_a_layer_that_feeds_nothing_costs_nothing_and_the_model_is_untouched():
    """Known answers: pruning the layer multiplied by zero changes nothing (loss change exactly
    0, accuracy change 0); pruning the one that makes the output changes the loss at 99%; every
    layer × sparsity has a row; the ranking puts the costly layer first; the input model keeps
    its weights."""
    torch.manual_seed(0)
    model = _TwoPaths()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = _images()
    with torch.no_grad():  # labels the dense model gets right: pruning can only cost
        images = ImageSet(x=images.x, y=model(images.x).argmax(1), source="labelled by the model")
    res = layer_sensitivity(model, images, ["used.weight", "unused.weight"], [0.5, 0.99])
    assert [(r.layer, r.sparsity) for r in res.rows] == [("used.weight", 0.5), ("used.weight", 0.99),
                                                          ("unused.weight", 0.5), ("unused.weight", 0.99)]
    unused = [r for r in res.rows if r.layer == "unused.weight"]
    assert all(r.loss_change == 0.0 and r.accuracy_change.difference == 0.0 for r in unused)
    used = next(r for r in res.rows if r.layer == "used.weight" and r.sparsity == 0.99)
    assert used.loss_change > 1e-3 and used.accuracy_change.difference < 0 and used.weights == 80
    assert res.ranked(0.99)[0].layer == "used.weight"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_cancelled_scan_stops_and_leaves_the_model_whole():
    model = _TwoPaths()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    token = CancelToken()
    seen: list[str] = []

    def progress(p) -> None:
        seen.append(p.message)
        if len(seen) == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        layer_sensitivity(model, _images(), ["used.weight", "unused.weight"], [0.5, 0.9],
                          progress=progress, cancel=token)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_scan_images_are_the_last_calibration_images():
    images = _images(300)
    part = scan_images(images, 100)
    assert torch.equal(part.x, images.x[200:]) and "last 100" in part.source
    assert len(scan_images(images, 1000)) == 300


def test_cli_sensitivity_table_json_and_csv(capsys, tmp_path):
    """``sensitivity`` scores each prunable layer at each sparsity on calibration images: JSON
    rows per layer × sparsity, a CSV with the same, and a clear error for unknown layers."""
    out = tmp_path / "sens.csv"
    code = cli_main(["sensitivity", "demo:digits_cnn", "--data", "digits", "--sparsities", "0.5,0.9",
                     "--images", "300", "--csv", str(out), "--json", "--quiet"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n"] == 300 and "calibration" in data["images"]
    assert [(r["layer"], r["sparsity"]) for r in data["rows"]][:2] == [("conv1.weight", 0.5), ("conv1.weight", 0.9)]
    assert len(data["rows"]) == 6
    with open(out, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert cli_main(["sensitivity", "demo", "--data", "digits", "--layers", "nope.weight", "--quiet"]) != 0
    assert "nope.weight" in capsys.readouterr().err
