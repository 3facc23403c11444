"""The images pruning changed (core.changed_images): which, drawn how, and the CLI's contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.changed_images import (
    ChangedImage,
    changed_images,
    display_pixels,
    guesses,
    guesses_text,
    second_line,
    share_by_class,
    write_contact_sheet,
)
from core.cli import main
from core.data import ImageSet, Normalization
from core.errors import StudioError
from core.evaluate import EvalResult, paired_difference, wilson_interval


def _result(hits: list[bool], predictions: list[int] | None = None) -> EvalResult:
    h = torch.tensor(hits, dtype=torch.bool)
    n, right = int(h.numel()), int(h.sum())
    pred = None if predictions is None else torch.tensor(predictions, dtype=torch.int32)
    return EvalResult(right / n, wilson_interval(right, n), 0.0, (0.0, 0.0), n, right, 0.0, h, pred)


Y = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2])
DENSE = _result([True, True, False, True, True, True, False, True], [2, 0, 2, 0, 2, 1, 1, 2])
PRUNED = _result([False, True, True, False, True, False, False, False], [1, 0, 1, 2, 2, 0, 2, 0])


def test_lost_and_gained_images_with_both_predictions():
    lost = changed_images(PRUNED, DENSE, Y)
    # right for dense, wrong pruned: images 0 (class 2), 3 (class 0), 5 (class 1), 7 (class 2);
    # listed by class, then in the set's order
    assert [c.index for c in lost] == [3, 5, 0, 7]
    assert lost[0] == ChangedImage(index=3, label=0, prediction=2, reference_prediction=0)
    assert lost[2] == ChangedImage(index=0, label=2, prediction=1, reference_prediction=2)
    gained = changed_images(PRUNED, DENSE, Y, kind="gained")
    assert gained == (ChangedImage(index=2, label=1, prediction=1, reference_prediction=2),)
    change = paired_difference(PRUNED, DENSE)
    assert (len(lost), len(gained)) == (change.b_only, change.a_only)
    assert [c.index for c in changed_images(PRUNED, DENSE, Y, label=2)] == [0, 7]
    assert changed_images(PRUNED, DENSE, Y, label=1, kind="gained")[0].index == 2
    assert changed_images(DENSE, DENSE, Y) == ()
    # captions' second line: what a lost image is now called, what a gained one was called
    assert second_line(lost[2], ("cat", "dog", "bird")) == "as dog"
    assert second_line(gained[0], ("cat", "dog", "bird")) == "was bird"
    assert second_line(ChangedImage(1, 0, 0, -1)) == "was wrong"
    # without the reference's predictions, a lost image's was its true class; a gained one's is unknown
    bare = _result(DENSE.hits.tolist())
    assert [c.reference_prediction for c in changed_images(PRUNED, bare, Y)] == [0, 1, 2, 2]
    assert changed_images(PRUNED, bare, Y, kind="gained")[0].reference_prediction == -1


def test_a_sheet_over_its_limit_draws_every_class_its_share(tmp_path: Path):
    many = tuple(ChangedImage(i, label, 0, label) for i, label in enumerate([0] * 50 + [1] * 3 + [2] * 20))
    picked = share_by_class(many, 10)
    # 3 rounds of one image per class (9 images), then the 4th of class 0: class 1 has only 3
    assert [c.label for c in picked] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [c.index for c in picked if c.label == 2] == [53, 54, 55]  # each class's first, in order
    assert share_by_class(many, 100) == many and share_by_class(many[:4], 4) == many[:4]
    images = ImageSet(torch.randn(73, 1, 4, 4), torch.tensor([c.label for c in many]), "test")
    assert write_contact_sheet(tmp_path / "s.png", images, many, limit=10) == 10


def test_each_images_most_probable_classes_in_words():
    top = torch.tensor([[2, 0, 1], [1, 2, 0]], dtype=torch.int32)
    prob = torch.tensor([[0.612, 0.2, 0.09], [0.5, 0.3, 0.2]])
    ev = EvalResult(0.5, (0.0, 1.0), 0.0, (0.0, 0.0), 2, 1, 0.0, torch.tensor([True, False]),
                    torch.tensor([2, 1], dtype=torch.int32), top, prob)
    assert guesses(ev, 0, ("cat", "dog", "bird")) == (("bird", pytest.approx(0.612)), ("cat", pytest.approx(0.2)),
                                                      ("dog", pytest.approx(0.09)))
    assert guesses_text(ev, 0, ("cat", "dog", "bird")) == "bird 61%, cat 20%, dog 9%"
    assert guesses_text(ev, 1) == "1 50%, 2 30%, 0 20%"
    assert guesses_text(DENSE, 0) == "" and guesses_text(ev, 5) == ""  # not kept, or no such image


def test_results_must_be_scored_on_the_same_images_with_predictions():
    with pytest.raises(ValueError, match="predictions"):
        changed_images(_result(PRUNED.hits.tolist()), DENSE, Y)
    with pytest.raises(ValueError, match="same images"):
        changed_images(PRUNED, _result([True, False]), Y)
    with pytest.raises(ValueError, match="labels"):
        changed_images(PRUNED, DENSE, Y[:5])
    with pytest.raises(ValueError, match="lost"):
        changed_images(PRUNED, DENSE, Y, kind="worse")


def test_pixels_come_back_from_the_normalised_inputs():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(3, 1, 5, 4)).astype(np.uint8)
    norm = Normalization((0.1307,), (0.3081,), 255.0)
    out = display_pixels(norm.apply(grey), norm)
    assert out.shape == (3, 5, 4, 3) and out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - grey[:, 0].astype(int)).max() <= 1
    assert (out[..., 0] == out[..., 2]).all()  # grey in all three channels
    rgb = rng.integers(0, 17, size=(2, 3, 6, 6)).astype(np.uint8)
    norm3 = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3), 16.0)
    out = display_pixels(norm3.apply(rgb), norm3)
    expected = np.rint(rgb.transpose(0, 2, 3, 1) / 16.0 * 255.0)
    assert np.abs(out.astype(int) - expected).max() <= 1
    # no normalisation known: each image stretched from its minimum to its maximum
    x = torch.tensor([[[[-3.0, 1.0], [5.0, 1.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    out = display_pixels(x)
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 128]] and (out[1] == 0).all()


def test_contact_sheet_png(tmp_path: Path):
    images = ImageSet(torch.randn(8, 3, 12, 12), Y, "test", class_names=("cat", "dog", "bird"))
    lost = changed_images(PRUNED, DENSE, Y)
    path = tmp_path / "lost.png"
    assert write_contact_sheet(path, images, lost, limit=3) == 3
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width >= 3 * 64 and img.height > 64
        pixels = np.asarray(img.convert("RGB"))
    assert (pixels != 255).any(axis=2).mean() > 0.1  # images drawn, not a blank page
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert write_contact_sheet(tmp_path / "none.png", images, ()) == 0
    with pytest.raises(StudioError) as err:
        write_contact_sheet(tmp_path / "lost.jpg", images, lost, field="--lost-images")
    assert err.value.field == "--lost-images" and ".png" in err.value.fix
    with pytest.raises(StudioError, match="does not exist"):
        write_contact_sheet(tmp_path / "missing" / "lost.png", images, lost)


def test_cli_prune_and_compare_draw_the_lost_images(capsys, tmp_path: Path):
    sheet = tmp_path / "lost.png"
    (tmp_path / "reports").mkdir()
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9",
                 "--lost-images", str(sheet), "--json", "--out", str(tmp_path / "p.onnx"),
                 "--report", str(tmp_path / "reports" / "run.md")])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["lost_images"]["images"] == data["images_lost"] > 0
    assert data["lost_images"]["shown"] == min(200, data["images_lost"])
    with Image.open(sheet) as img:
        assert img.format == "PNG"
    # the report links the sheet, relative to the report's folder
    report = (tmp_path / "reports" / "run.md").read_text()
    assert f"The {data['images_lost']:,} images lost against dense" in report
    assert "![Images lost against dense](../lost.png)" in report
    other = tmp_path / "cmp.png"
    code = main(["compare", "demo", str(tmp_path / "p.onnx"), "--data", "digits", "--lost-images", str(other)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (f"Lost:       {data['images_lost']:,} images MODEL (demo:digits_mlp) gets right and OTHER (p.onnx) not"
            in out and other.exists())
    # a wrong suffix is refused before any work, naming the option
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9",
                 "--lost-images", str(tmp_path / "lost.jpg")])
    _, err = capsys.readouterr()
    assert code != 0 and "--lost-images" in err and ".png" in err
