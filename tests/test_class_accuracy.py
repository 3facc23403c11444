"""Accuracy per class: counts, paired changes and the Bonferroni call, on answers known by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.class_accuracy import (
    bonferroni_z,
    class_rows,
    class_scores,
    class_table,
    describe_classes,
    lost_to_text,
    most_changed,
)
from core.cli import main
from core.data import CIFAR10_CLASSES, load_bundle
from core.errors import StudioError
from core.evaluate import (
    EvalResult,
    paired_difference,
    paired_interval,
    wilson_interval,
)


def _result(hits: list[bool] | torch.Tensor) -> EvalResult:
    """An EvalResult with these per-image hits (accuracy and counts from them)."""
    h = torch.as_tensor(hits, dtype=torch.bool)
    n, right = int(h.numel()), int(h.sum())
    return EvalResult(right / n, wilson_interval(right, n), 0.0, (0.0, 0.0), n, right, 0.0, h)


def test_counts_and_wilson_intervals_per_class():
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    hits = [True, False, True, True, True, False, False, True, False, True]
    scores = class_scores(_result(hits), y, names=["cat", "dog", "emu"])
    assert [s.name for s in scores] == ["cat", "dog", "emu"]
    assert [(s.n, s.correct) for s in scores] == [(4, 3), (2, 2), (4, 1)]
    assert scores[0].accuracy == 0.75 and scores[0].ci == wilson_interval(3, 4)
    assert all(s.change is None and not s.clear for s in scores)  # no reference, no change
    assert describe_classes(scores) == ""


def test_change_is_the_paired_difference_on_the_class_images():
    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.integers(0, 4, 400))
    dense = torch.from_numpy(rng.random(400) < 0.9)
    pruned = dense & torch.from_numpy(rng.random(400) < 0.85)  # loses some, gains none...
    pruned |= torch.from_numpy(rng.random(400) < 0.03)  # ...and gains a few
    scores = class_scores(_result(pruned), y, reference=_result(dense))
    for s in scores:
        sel = y == s.label
        want = paired_difference(_result(pruned[sel]), _result(dense[sel]))
        assert s.change == want
        assert s.reference_accuracy == pytest.approx(float(dense[sel].float().mean()))
    # the per-class counts add up to the whole set's
    assert sum(s.change.a_only for s in scores) == int((pruned & ~dense).sum())
    assert sum(s.change.b_only for s in scores) == int((dense & ~pruned).sum())


def test_bonferroni_call_is_stricter_than_the_95_percent_interval():
    assert bonferroni_z(1) == pytest.approx(1.959964, abs=1e-5)
    assert bonferroni_z(10) == pytest.approx(2.807034, abs=1e-5)
    # ten classes of 50 images; class 0 loses 6 images, class 1 loses 10, the rest nothing
    y = torch.arange(10).repeat_interleave(50)
    dense = torch.ones(500, dtype=torch.bool)
    pruned = dense.clone()
    pruned[:6] = False
    pruned[50:60] = False
    scores = class_scores(_result(pruned), y, reference=_result(dense))
    six, ten = scores[0], scores[1]
    assert six.change.ci == paired_interval(0, 6, 50) and six.change.ci[1] < 0  # excludes 0 at 95%...
    assert not six.clear  # ...but not once ten classes are allowed for
    assert ten.clear and ten.change.difference == pytest.approx(-0.2)
    assert [s.label for s in most_changed(scores)] == [1, 0]
    text = describe_classes(scores)
    assert text.startswith("largest losses: class 1 -20.0 points") and "(clear)" in text
    assert "1 of 10 classes clearly lower" in text
    assert class_rows(scores)[1]["clear"] is True and class_rows(scores)[1]["images_lost"] == 10
    table = class_table(scores)
    assert len(table.splitlines()) == 11 and table.splitlines()[2].endswith("clear")


def test_no_false_calls_beyond_five_percent_when_nothing_changed():
    """Under the null (an image is right for the pruned model only, or for the dense one only,
    with the same chance), the Bonferroni call names some class in at most about 5% of runs;
    plain 95% intervals do in far more."""
    rng = np.random.default_rng(0)
    y = torch.arange(10).repeat_interleave(80)
    any_clear = any_95 = 0
    runs = 300
    for _ in range(runs):
        u = rng.random(800)
        both = torch.from_numpy(u < 0.75)
        dense = both | torch.from_numpy((u >= 0.75) & (u < 0.80))  # 5% right for dense only
        pruned = both | torch.from_numpy((u >= 0.80) & (u < 0.85))  # 5% right for pruned only
        scores = class_scores(_result(pruned), y, reference=_result(dense))
        any_clear += any(s.clear for s in scores)
        any_95 += any(s.change.excludes_zero for s in scores)
    assert any_clear / runs <= 0.08
    assert any_95 / runs >= 0.2


def test_labels_must_match_the_scored_images():
    with pytest.raises(ValueError, match="labels"):
        class_scores(_result([True, False]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="same images"):
        class_scores(_result([True, False]), torch.tensor([0, 1]), reference=_result([True]))


def test_sources_that_name_their_classes(tmp_path: Path):
    from test_data import make_image_folder, save_npz, write_cifar_dir

    make_image_folder(tmp_path / "folder" / "train", {"cat": 2, "dog": 2, "emu": 1})
    make_image_folder(tmp_path / "folder" / "test", {"dog": 1, "emu": 1})
    b = load_bundle(str(tmp_path / "folder"), preset="resnet20")
    assert b.evaluation.class_names == ("cat", "dog", "emu") and b.evaluation.class_name(2) == "emu"

    write_cifar_dir(tmp_path / "cifar")
    b = load_bundle(str(tmp_path / "cifar"), preset="resnet20")
    assert b.evaluation.class_names == CIFAR10_CLASSES and b.calibration.class_name(3) == "cat"

    x = np.zeros((6, 8, 8), dtype=np.uint8)
    save_npz(tmp_path / "named.npz", x=x, y=np.array([0, 1, 0, 1, 0, 1]), class_names=np.array(["no", "yes"]))
    b = load_bundle(str(tmp_path / "named.npz"), preset="digits")
    assert b.evaluation.class_names == ("no", "yes")
    assert load_bundle("digits").evaluation.class_name(7) == "7"  # no names: the number

    save_npz(tmp_path / "bad.npz", x=x, y=np.zeros(6, dtype=np.int64), class_names=np.arange(2))
    with pytest.raises(StudioError) as info:
        load_bundle(str(tmp_path / "bad.npz"), preset="digits")
    msg = str(info.value)
    assert "bad.npz" in msg and "[field: class_names]" in msg and "numpy.array(['cat', 'dog'])" in msg


def test_imagenet_classes_named_by_torchvision_weights(tmp_path: Path, capsys, monkeypatch):
    """ImageNet's folders are WordNet IDs (n01440764); torchvision's pretrained weights name their
    outputs ("tench"). Data named only by such IDs, or not at all, takes the model's names where
    the counts agree; names in words (the data's or a user's) are kept."""
    from torchvision.models import get_model_weights

    from core.data import ImageSet, bundle_named_by_model, named_by_model

    words = tuple(get_model_weights("resnet18").DEFAULT.meta["categories"])
    assert len(words) == 1000 and words[0] == "tench"
    y = torch.tensor([0, 1, 999])
    ids = ImageSet(torch.zeros(3, 3, 2, 2), y, "val", class_names=tuple(f"n{i:08d}" for i in range(1000)))
    assert named_by_model(ids, words).class_name(999) == words[999]
    bare = ImageSet(torch.zeros(3, 3, 2, 2), y, "npz")
    assert named_by_model(bare, words).class_names == words
    assert named_by_model(bare, words[:10]) is bare  # labels beyond the model's names
    assert named_by_model(bare, None) is bare
    own = ImageSet(torch.zeros(3, 3, 2, 2), y, "val", class_names=tuple(f"kind {i}" for i in range(1000)))
    assert named_by_model(own, words) is own  # the data's words stay
    assert named_by_model(ImageSet(ids.x, ids.y, "val", class_names=ids.class_names[:999]), words).class_names[0] \
        == "n00000000"  # 999 IDs for 1000 outputs: not the same classes
    bundle = load_bundle("digits")
    assert bundle_named_by_model(bundle, None) is bundle

    # end to end: a torchvision network (its weights from the hub cache) on images without names
    from test_data import save_npz

    from core.architectures import build_architecture, torchvision_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = torchvision_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(build_architecture("resnet18").state_dict(), path)
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "val.npz", x=rng.integers(0, 255, (4, 3, 224, 224), dtype=np.uint8), y=np.array([0, 1, 2, 3]))
    code = main(["eval", "torchvision:resnet18", "--data", str(tmp_path / "val.npz"), "--preset", "imagenet",
                 "--per-class", "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["per_class"]] == list(words[:4])


def test_resnet20_names_cifar10_classes(tmp_path: Path, capsys):
    """The resnet20 architecture is CIFAR-10's: its checkpoints name their 10 outputs, so images
    without names (the shared .npz files) read "bird", not "2"; a 100-class ResNet20 names none."""
    from test_data import save_npz

    from core.architectures import build_architecture
    from core.model_io import load_model

    torch.manual_seed(0)
    torch.save(build_architecture("resnet20").state_dict(), tmp_path / "r20.pt")
    loaded = load_model(tmp_path / "r20.pt", arch="resnet20")
    assert loaded.class_names == CIFAR10_CLASSES
    torch.save(build_architecture("resnet20", num_classes=100).state_dict(), tmp_path / "r100.pt")
    assert load_model(tmp_path / "r100.pt", arch="resnet20").class_names is None

    rng = np.random.default_rng(0)
    save_npz(tmp_path / "test.npz", x=rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8),
             y=np.array([0, 1, 2, 3, 4, 5]))
    code = main(["eval", str(tmp_path / "r20.pt"), "--arch", "resnet20", "--data", str(tmp_path / "test.npz"),
                 "--per-class", "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["per_class"]] == list(CIFAR10_CLASSES[:6])


def test_class_curves_of_a_sweep_by_hand():
    """core.sweep.class_curves: each class's accuracy from the dense model (0) through a method's
    points, by rising sparsity; {} for images the sweep was not scored on."""
    from core.data import ImageSet
    from core.sweep import SweepResult, SweepRow, class_curves

    images = ImageSet(torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 1, 1]), "test", class_names=("a", "b"))

    def row(sparsity: float, hits: list[bool]) -> SweepRow:
        return SweepRow("chita", sparsity, _result(hits), 1, 4, None, 0.0)

    res = SweepResult((row(0.9, [False, False, True, False]), row(0.5, [True, False, True, True])),
                      _result([True] * 4), 0.0)
    assert class_curves(res, images, "chita") == {"a": [(0.0, 1.0), (0.5, 0.5), (0.9, 0.0)],
                                                  "b": [(0.0, 1.0), (0.5, 1.0), (0.9, 0.5)]}
    assert class_curves(res, images, "obd") == {}  # no such method in the sweep
    other = ImageSet(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 1]), "other")
    assert class_curves(res, other, "chita") == {}


def test_cli_prune_and_eval_per_class(capsys):
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9",
                 "--per-class", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    rows = data["per_class"]
    assert [r["label"] for r in rows] == list(range(10))
    assert sum(r["n"] for r in rows) == data["n_eval"]
    assert sum(r["images_lost"] for r in rows) == data["images_lost"]
    assert sum(r["correct"] for r in rows) == round(data["accuracy"] * data["n_eval"])
    assert data["classes_clearly_lower"] == [r["name"] for r in rows if r["clear"] and r["change"] < 0]

    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9"])
    out, _ = capsys.readouterr()
    assert code == 0 and "Classes:    " in out and "--per-class for the table" in out

    code = main(["eval", "demo", "--data", "digits", "--per-class"])
    out, _ = capsys.readouterr()
    assert code == 0 and "Per class (10 classes, Wilson 95% intervals)" in out
    assert len([line for line in out.splitlines() if line.startswith("  ") and "%]" not in line and "]" in line]) == 10


def test_lost_images_are_traced_to_the_classes_they_went_to():
    """ClassScore.lost_to counts, per class, the predictions the pruned model gives the images it
    lost (right for the reference, wrong now), most first; images it gained do not count."""
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    dense = torch.tensor([1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    pred = torch.tensor([2, 2, 1, 2, 0, 1, 0, 1, 2, 2], dtype=torch.int32)  # image 4 is gained
    pruned = pred == y
    res = EvalResult(0.0, (0.0, 1.0), 0.0, (0.0, 0.0), 10, int(pruned.sum()), 0.0, pruned, pred)
    scores = class_scores(res, y, reference=_result(dense), names=["cat", "dog", "emu"])
    assert scores[0].lost_to == (("emu", 3), ("dog", 1)) and scores[0].change.b_only == 4
    assert scores[0].change.a_only == 1  # the gained image is not among the lost ones
    assert scores[1].lost_to == (("cat", 1),) and scores[2].lost_to == ()
    assert lost_to_text(scores[0]) == "4 images lost: 3 to emu, 1 to dog"
    assert lost_to_text(scores[2]) == ""
    assert class_rows(scores)[0]["lost_to"] == [{"class": "emu", "images": 3}, {"class": "dog", "images": 1}]
    # without predictions (a run saved before they were kept) nothing is traced
    assert class_scores(_result(pruned), y, reference=_result(dense))[0].lost_to == ()


def test_evaluate_keeps_each_images_prediction():
    from core.demo import load_demo
    from core.evaluate import evaluate

    images = load_bundle("digits").evaluation
    ev = evaluate(load_demo("digits_mlp").model, images)
    assert ev.predictions.dtype == torch.int32 and ev.predictions.shape == images.y.shape
    assert torch.equal(ev.hits, ev.predictions.long() == images.y)
    # and each image's three most probable classes, most probable first: the first is the prediction
    assert ev.top_classes.shape == (len(images), 3) and torch.equal(ev.top_classes[:, 0], ev.predictions)
    p = ev.top_probabilities
    assert (p[:, :-1] >= p[:, 1:]).all() and (p > 0).all() and (p.sum(1) <= 1 + 1e-5).all()
    assert (ev.top_classes[:, 0] != ev.top_classes[:, 1]).all()


def test_class_names_given_on_the_command_line_or_in_a_file(capsys, tmp_path: Path):
    digits = ",".join(f"digit {i}" for i in range(10))
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9",
                 "--per-class", "--class-names", digits, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["per_class"]] == [f"digit {i}" for i in range(10)]

    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"d{i}" for i in range(10)) + "\n\n")
    code = main(["eval", "demo", "--data", "digits", "--per-class", "--class-names", str(names), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["per_class"]] == [f"d{i}" for i in range(10)]

    code = main(["eval", "demo", "--data", "digits", "--per-class", "--class-names", "a,b,c"])
    _, err = capsys.readouterr()
    assert code == 2 and "3 class names given, but the labels go up to 9" in err and "[field: class_names]" in err
    code = main(["eval", "demo", "--data", "digits", "--class-names", "a,,c"])
    _, err = capsys.readouterr()
    assert code == 2 and "No usable class names" in err


def test_compare_two_models_on_the_same_images(capsys, tmp_path: Path):
    """`compare MODEL OTHER`: the paired change, the agreement of their predictions and the
    classes; a model against itself changes nothing, and a pruned file against its dense model
    gives the change `prune` reported."""
    pruned = tmp_path / "pruned.onnx"
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9",
                 "--out", str(pruned), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    pruned_run = json.loads(out)
    code = main(["compare", "demo", str(pruned), "--data", "digits", "--per-class", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["change"] == pytest.approx(pruned_run["accuracy_change"])
    assert (data["images_gained"], data["images_lost"]) == (pruned_run["images_gained"], pruned_run["images_lost"])
    assert data["other_weight_zeros"] > 0.85 and data["weight_zeros"] < 0.01
    assert data["agreement"] < 1.0 and 1.0 - data["agreement"] >= data["images_lost"] / data["n"]
    assert sum(r["images_lost"] for r in data["per_class"]) == data["images_lost"]

    code = main(["compare", "demo", "demo", "--data", "digits", "--json"])
    out, err = capsys.readouterr()
    same = json.loads(out)
    assert code == 0 and same["change"] == 0.0 and same["agreement"] == 1.0
    assert same["classes_clearly_lower"] == [] == same["classes_clearly_higher"]
    code = main(["compare", "demo", "demo:digits_cnn", "--data", "digits"])
    out, _ = capsys.readouterr()
    assert code == 0 and "Agreement:" in out and "Classes:" in out
