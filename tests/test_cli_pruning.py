"""The `prune` and `sweep` commands and the sweep module, end to end on real data."""

from __future__ import annotations

import csv
import json

import onnxruntime as ort
import pytest
import torch

from core.cli import main
from core.data import load_bundle
from core.demo import load_demo
from core.evaluate import evaluate
from core.pruning import chitapp_schedule
from core.sweep import run_sweep


def _json(capsys, *argv: str) -> dict:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_prune_reports_accuracy_interval_sparsity_and_exports(capsys, tmp_path):
    out = tmp_path / "pruned.onnx"
    data = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "chita",
                 "--sparsity", "0.8", "--samples", "128", "--out", str(out))
    assert data["nonzeros"] == round(0.2 * data["prunable_weights"])
    assert abs(data["sparsity"] - 0.8) < 1e-3
    lo, hi = data["accuracy_ci"]
    assert 0 <= lo <= data["accuracy"] <= hi <= 1
    assert data["objective"] <= data["magnitude_objective"]
    assert 0 < data["objective_lower_bound"] <= data["objective"]  # a floor under every mask
    assert data["timings"]["total"] > 0 and data["lambda"] > 0
    # the exported file really is the pruned model: its zeros survive in onnxruntime's graph
    assert data["export"]["max_abs_diff"] < 1e-4 and out.exists()
    # and scored in onnxruntime on the same evaluation images: the accuracy the command reports
    assert data["export"]["onnx_accuracy"] == data["accuracy"] == data["export"]["pytorch_accuracy"]
    assert data["export"]["scored_differently"] == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = load_bundle("digits").evaluation.x[:4].numpy()
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (4, 10)


def test_prune_chitapp_reports_its_stages_given_or_automatic(capsys):
    given = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "chita++",
                  "--sparsity", "0.6", "--samples", "64", "--stages", "3", "--lambda", "1e-4")
    assert given["stages"] == 3 and given["lambda"] == 1e-4
    auto = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "chita++",
                 "--sparsity", "0.6", "--samples", "64", "--lambda", "1e-4")
    assert auto["stages"] == 10  # the demo MLP has fewer than 10 prunable layers
    single = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude",
                   "--sparsity", "0.6")
    assert single["stages"] is None


def test_prune_chitapp_schedule_reaches_the_run_and_its_report(capsys):
    argv = ("prune", "demo:digits_mlp", "--data", "digits", "--method", "chita++",
            "--sparsity", "0.9", "--samples", "64", "--stages", "4", "--lambda", "1e-4")
    log = _json(capsys, *argv)
    cubic = _json(capsys, *argv, "--schedule", "cubic")
    assert log["schedule"]["shape"] == "log" and cubic["schedule"]["shape"] == "cubic"
    assert log["schedule"]["sparsities"] == pytest.approx(chitapp_schedule(0.9, 4, "log"))
    assert cubic["schedule"]["sparsities"] == pytest.approx(chitapp_schedule(0.9, 4, "cubic"))
    assert log["nonzeros"] == cubic["nonzeros"] == round(0.1 * log["prunable_weights"])
    assert main([*argv, "--schedule", "linear"]) == 2
    assert "--schedule" in capsys.readouterr().err


def test_prune_refine_reports_its_steps_in_json_and_text(capsys):
    data = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude",
                 "--sparsity", "0.9", "--samples", "128", "--refine", "2")
    steps = data["refinement"]
    assert 1 <= len(steps) <= 2 and steps[0]["accepted"]
    assert steps[-1]["holdout_loss_after"] < steps[0]["holdout_loss_before"]
    assert data["timings"]["refine"] > 0
    assert data["refine_images_per_row"] == 5  # (1,258 calibration − 500 held out) // 128
    assert main(["prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude",
                 "--sparsity", "0.9", "--samples", "128", "--refine", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Refinement: " in out and "gradients from 640 calibration images (128 rows of 5)" in out
    assert main(["prune", "demo", "--data", "digits", "--sparsity", "0.5", "--refine", "-1"]) == 2
    assert "refine steps" in capsys.readouterr().err


def test_prune_update_scale_auto_reports_the_alpha_it_chose(capsys):
    argv = ["prune", "demo:digits_mlp", "--data", "digits", "--method", "chita", "--sparsity", "0.95",
            "--samples", "128", "--lambda", "1e-5"]
    data = _json(capsys, *argv, "--update-scale", "auto")
    rec = data["update_scale"]
    assert rec["chosen"] in rec["grid"] and rec["holdout_error"][0] is not None
    assert data["nonzeros"] == round(0.05 * data["prunable_weights"])
    assert _json(capsys, *argv)["update_scale"] is None  # the default: the whole update
    assert main([*argv, "--update-scale", "0.5", "-q"]) == 0
    assert "Update:     α = 0.5 of the weight update on the kept weights (fixed)." in capsys.readouterr().out
    assert main([*argv, "--update-scale", "2"]) == 2
    assert "must be in [0, 1] or 'auto'" in capsys.readouterr().err


def test_prune_obd_says_when_it_streamed_the_fisher_diagonal(capsys, monkeypatch):
    import core.fisher as fisher

    argv = ["prune", "demo:digits_mlp", "--data", "digits", "--method", "obd", "--sparsity", "0.5",
            "--samples", "128", "-q"]
    assert main(argv) == 0 and "Gradients:" not in capsys.readouterr().out
    p = 6464  # the digits MLP's prunable weights
    monkeypatch.setattr(fisher, "available_memory_bytes", lambda: 64 * p * 4 * 1.5)  # room for 32 rows
    assert main(argv) == 0
    assert "Gradients:  the Fisher's diagonal summed a block of images at a time (128 images;" in \
        capsys.readouterr().out


def test_prune_says_when_the_calibration_set_gave_fewer_rows_than_asked(capsys):
    argv = ["prune", "demo:digits_mlp", "--data", "digits", "--method", "chita", "--sparsity", "0.8"]
    data = _json(capsys, *argv, "--samples", "5000")
    assert data["samples_asked"] == 5000 and data["samples"] < 1258  # the digits' calibration set
    assert main([*argv, "--samples", "5000", "-q"]) == 0
    assert (f"Gradients:  {data['samples']:,} gradient rows, not the 5,000 asked: the calibration "
            "set holds 1,258 images") in capsys.readouterr().out
    assert main([*argv, "--samples", "128", "-q"]) == 0 and "Gradients:" not in capsys.readouterr().out
    magnitude = ["prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude",
                 "--sparsity", "0.8", "--samples", "5000", "-q"]
    assert main(magnitude) == 0 and "Gradients:" not in capsys.readouterr().out  # took none
    sweep = ["sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude,chita",
             "--sparsities", "0.5,0.9", "--samples", "5000"]
    swept = _json(capsys, *sweep)
    assert (swept["samples"], swept["samples_asked"]) == (data["samples"], 5000)
    assert main([*sweep, "-q"]) == 0
    assert f"gradients: {data['samples']:,} gradient rows, not the 5,000 asked" in capsys.readouterr().out
    assert main([*sweep[:-1], "128", "-q"]) == 0 and "gradients:" not in capsys.readouterr().out


def test_recalibrated_bn_says_whether_the_result_holds_recomputed_statistics():
    """--json's recalibrated_bn is what the result carries; recalibrate_bn is the setting. A
    recalibration that raised the held-out loss is declined: on, and not recalibrated."""
    from core.cli import _statistics_recomputed

    declined = {"has_batchnorm": True, "recalibrated": True,
                "recalibration": {"holdout_loss_before": 2.3, "holdout_loss_after": 8.4, "applied": False}}
    assert _statistics_recomputed(declined) is False
    applied = {**declined, "recalibration": {**declined["recalibration"], "applied": True}}
    assert _statistics_recomputed(applied) is True
    assert _statistics_recomputed({"has_batchnorm": True, "recalibrated": True}) is True  # done in the walk
    assert _statistics_recomputed({"has_batchnorm": True, "recalibrated": False}) is False
    assert _statistics_recomputed({"has_batchnorm": False, "recalibrated": False}) is None


def test_prune_says_what_it_did_with_batchnorm(capsys):
    """On a BatchNorm model the JSON and the text say whether the statistics were recomputed,
    with the held-out losses that decided it; --no-recalibrate-bn says they were kept."""
    argv = ["prune", "demo:digits_cnn", "--data", "digits", "--method", "magnitude",
            "--sparsity", "0.9", "--samples", "128"]
    data = _json(capsys, *argv)
    d = data["batchnorm_recalibration"]
    assert data["recalibrated_bn"] is True and data["recalibrate_bn"] is True and d["applied"] is True
    assert d["holdout_loss_after"] < d["holdout_loss_before"]
    assert (f"statistics recomputed after pruning (held-out loss {d['holdout_loss_before']:.4g} "
            f"→ {d['holdout_loss_after']:.4g})") in data["batchnorm"]
    off = _json(capsys, *argv, "--no-recalibrate-bn")
    assert off["recalibrated_bn"] is False and off["recalibrate_bn"] is False
    assert main([*argv, "--no-recalibrate-bn", "-q"]) == 0
    assert "statistics not recomputed after pruning (recalibration off).\n" in capsys.readouterr().out
    assert data["batchnorm_images"] in ("none", "crop_flip")  # auto: the refresh check's choice
    cropped = _json(capsys, *argv, "--bn-augment", "crop_flip")
    assert cropped["batchnorm_images"] == "crop_flip" and "cropped and mirrored" in cropped["batchnorm"]
    assert cropped["batchnorm_recalibration"]["holdout_loss_after"] != d["holdout_loss_after"]
    assert main([*argv, "--bn-augment", "cutout"]) == 2
    assert "--bn-augment" in capsys.readouterr().err
    mlp = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude",
                "--sparsity", "0.9")
    assert mlp["batchnorm"] is None and mlp["batchnorm_recalibration"] is None


def test_prune_images_per_row_reports_rows_and_images(capsys):
    data = _json(capsys, "prune", "demo:digits_mlp", "--data", "digits", "--method", "chita",
                 "--sparsity", "0.8", "--samples", "128", "--images-per-row", "3")
    assert data["images_per_row"] == 3 and data["samples"] == 128
    assert data["accuracy_change"] == pytest.approx(data["accuracy"] - data["dense_accuracy"])
    assert data["images_gained"] - data["images_lost"] == round(data["accuracy_change"] * data["n_eval"])
    lo, hi = data["accuracy_change_ci"]
    assert lo <= data["accuracy_change"] <= hi and hi - lo < 0.2
    assert data["nonzeros"] == round(0.2 * data["prunable_weights"])
    argv = ["prune", "demo:digits_mlp", "--data", "digits", "--method", "obd", "--sparsity", "0.8",
            "--samples", "128"]
    assert main([*argv, "--images-per-row", "99", "-q"]) == 0  # 1,258 images hold 5 per row
    assert "Gradients:  128 rows of 5 images each (640 calibration images); 99 per row asked" \
        in capsys.readouterr().out
    assert main([*argv, "--images-per-row", "300"]) == 2
    assert "images per row" in capsys.readouterr().err


def test_sweep_refine_is_applied_to_every_point(capsys):
    argv = ("sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude,chita",
            "--sparsities", "0.9", "--samples", "128")
    plain = _json(capsys, *argv)["rows"]
    refined = _json(capsys, *argv, "--refine", "2")["rows"]
    for a, b in zip(plain, refined):  # a step is taken only if held-out loss falls: test loss moves
        assert a["method"] == b["method"] and a["nonzeros"] == b["nonzeros"]
        assert a["loss"] != b["loss"]


def test_sweep_update_scale_reaches_chita_points_and_leaves_magnitude(capsys):
    argv = ("sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude,chita",
            "--sparsities", "0.9", "--samples", "128", "--lambda", "1e-5")
    whole = _json(capsys, *argv)["rows"]
    none = _json(capsys, *argv, "--update-scale", "0")["rows"]
    assert whole[0]["loss"] == none[0]["loss"]  # magnitude has no update to scale
    assert whole[1]["method"] == "chita" and whole[1]["loss"] != none[1]["loss"]
    assert whole[1]["nonzeros"] == none[1]["nonzeros"]


def test_prune_rejects_a_bad_sparsity_with_the_field(capsys):
    code = main(["prune", "demo", "--data", "digits", "--sparsity", "1.5"])
    _, err = capsys.readouterr()
    assert code == 2 and "sparsity" in err and "Traceback" not in err


@pytest.mark.shared
def test_prune_mlpnet_chita_beats_magnitude_at_0_95(capsys, shared_dir):
    args = [str(shared_dir / "models/mlpnet_mnist.pt"), "--arch", "mlpnet",
            "--data", str(shared_dir / "data/mnist"), "--sparsity", "0.95", "--samples", "1000"]
    mag = _json(capsys, "prune", *args, "--method", "magnitude")
    chita = _json(capsys, "prune", *args, "--method", "chita")
    assert chita["nonzeros"] == mag["nonzeros"] == round(0.05 * 32360)
    # measured 89.3% against 83.6% on the 10,000 test images: far outside both intervals
    assert chita["accuracy_ci"][0] > mag["accuracy_ci"][1]


def test_sweep_writes_csv_and_plots(capsys, tmp_path):
    csv_path, png, svg = tmp_path / "s.csv", tmp_path / "s.png", tmp_path / "s.svg"
    class_path = tmp_path / "classes.csv"
    data = _json(capsys, "sweep", "demo", "--data", "digits", "--methods", "magnitude,obd",
                 "--sparsities", "0.5,0.9", "--samples", "64", "--csv", str(csv_path),
                 "--plot", str(png), "--class-csv", str(class_path))
    assert [(r["method"], r["sparsity"]) for r in data["rows"]] == [
        ("magnitude", 0.5), ("magnitude", 0.9), ("obd", 0.5), ("obd", 0.9)]
    rows = list(csv.DictReader(open(csv_path)))
    assert rows[0]["method"] == "dense" and len(rows) == 5
    assert float(rows[1]["accuracy_lo"]) <= float(rows[1]["accuracy"]) <= float(rows[1]["accuracy_hi"])
    for r, j in zip(rows[1:], data["rows"]):  # change against dense, paired on the same images
        change = float(r["change_vs_dense"])
        assert change == pytest.approx(float(r["accuracy"]) - float(rows[0]["accuracy"]))
        assert float(r["change_lo"]) <= change <= float(r["change_hi"])
        assert j["accuracy_change"] == pytest.approx(j["accuracy"] - data["dense_accuracy"])
        assert j["accuracy_change_ci"] == pytest.approx([float(r["change_lo"]), float(r["change_hi"])])
    # against magnitude at the same sparsity, paired; empty on magnitude's own rows
    res_rows = {(r["method"], float(r["sparsity"])): r for r in rows[1:]}
    for s in (0.5, 0.9):
        obd, mag = res_rows[("obd", s)], res_rows[("magnitude", s)]
        vs = float(obd["change_vs_magnitude"])
        assert vs == pytest.approx(float(obd["accuracy"]) - float(mag["accuracy"]))
        assert float(obd["vs_magnitude_lo"]) <= vs <= float(obd["vs_magnitude_hi"])
        assert mag["change_vs_magnitude"] == ""
        j = next(x for x in data["rows"] if x["method"] == "obd" and x["sparsity"] == s)
        assert j["vs_magnitude"] == pytest.approx(vs)
    # each point's worst class against dense, in the JSON and the CSV alike (9 of 10 weights gone
    # costs the demo some class); the dense row has none
    worst = next(x for x in data["rows"] if x["method"] == "magnitude" and x["sparsity"] == 0.9)["worst_class"]
    assert worst["change"] < 0 and worst["change_ci"][0] <= worst["change"] <= worst["change_ci"][1]
    mag90 = res_rows[("magnitude", 0.9)]
    assert (mag90["worst_class"], float(mag90["worst_class_change"])) == (worst["name"], pytest.approx(worst["change"]))
    assert rows[0]["worst_class"] == ""
    # --class-csv: one line per point and class; its counts give each point's accuracy, and its
    # worst change is the worst class above
    per_class = list(csv.DictReader(open(class_path)))
    assert len(per_class) == 10 * 5 and {r["method"] for r in per_class[:10]} == {"dense"}
    for (method, sparsity), r in res_rows.items():
        mine = [c for c in per_class if c["method"] == method and float(c["sparsity"]) == sparsity]
        assert sum(int(c["correct"]) for c in mine) == round(float(r["accuracy"]) * int(r["n_eval"]))
        assert all(float(c["accuracy_lo"]) <= float(c["accuracy"]) <= float(c["accuracy_hi"]) for c in mine)
    mine = [c for c in per_class if c["method"] == "magnitude" and float(c["sparsity"]) == 0.9]
    lowest = min(mine, key=lambda c: (float(c["change_vs_dense"]), int(c["label"])))
    assert lowest["class"] == worst["name"] and float(lowest["change_vs_dense"]) == pytest.approx(worst["change"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main(["sweep", "demo", "--data", "digits", "--methods", "magnitude", "--sparsities", "0.5",
          "--plot", str(svg)])
    capsys.readouterr()
    assert svg.read_text().startswith("<svg") and "Magnitude" in svg.read_text()


@pytest.mark.parametrize("argv, field, words", [
    (("prune", "--method", "chita", "--sparsity", "1.5"), "sparsity", "outside [0, 1)"),
    (("prune", "--method", "chita", "--sparsity", "0.5", "--out", "{missing}/p.onnx"), "--out", "does not exist"),
    (("sweep", "--methods", "magnitude", "--sparsities", "0.5", "--csv", "{missing}/s.csv"), "--csv", "does not exist"),
    (("sweep", "--methods", "magnitude", "--sparsities", "0.5", "--plot", "{tmp}/s.jpg"), "--plot", "not .jpg"),
    (("sweep", "--methods", "magnitude", "--sparsities", "0.5", "--plot", "{tmp}"), "--plot", "a folder"),
    (("export", "--out", "{missing}/e.onnx"), "--out", "does not exist"),
])
def test_bad_arguments_and_unwritable_files_are_refused_before_any_work(capsys, tmp_path, monkeypatch, argv, field,
                                                                         words):
    """A sparsity out of range, or a file that cannot be written where --out, --csv or --plot
    names it, is refused before the model is loaded: a run of minutes is not lost at its end."""
    import core.cli as cli

    loaded = []
    monkeypatch.setattr(cli, "model_from_args", lambda *a, **k: loaded.append(1) or pytest.fail("model loaded"))
    command, *rest = (a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in argv)
    code = main([command, "demo:digits_mlp", *([] if command == "export" else ["--data", "digits"]), *rest])
    err = capsys.readouterr().err
    assert code != 0 and not loaded
    assert f"[field: {field}]" in err and words in err and "What to do:" in err


def test_a_failed_export_still_prints_the_runs_results(capsys, tmp_path, monkeypatch):
    """prune --out whose export fails (here: onnxruntime disagrees) prints the run's accuracy and
    the error, and exits 1; the results of the run were lost with the error before."""
    import core.export
    from core.errors import StudioError

    def refuse(*args, **kwargs):
        raise StudioError("the ONNX graph's outputs differ from PyTorch's; nothing was saved", path=str(out))

    monkeypatch.setattr(core.export, "export_onnx", refuse)
    out = tmp_path / "p.onnx"
    argv = ["prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude", "--sparsity", "0.5",
            "--out", str(out)]
    assert main(argv) == 1
    printed, err = capsys.readouterr()
    assert "Accuracy:" in printed and "Exported:   nothing:" in printed and "outputs differ" in err
    assert main([*argv, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert 0 < data["accuracy"] <= 1 and "outputs differ" in data["export_error"] and "export" not in data
    assert not out.exists()


def test_a_sweep_file_that_fails_to_write_comes_after_the_table(capsys, tmp_path, monkeypatch):
    """When --csv's file cannot be written at the end (the disk filled during the sweep), the
    table is printed first and the error names the option and the file; it was a traceback that
    lost the table."""
    import errno

    from core.sweep import SweepResult

    def full(self, path, images=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SweepResult, "to_csv", full)
    target = tmp_path / "s.csv"
    code = main(["sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude",
                 "--sparsities", "0.5,0.8", "--csv", str(target), "-q"])
    out, err = capsys.readouterr()
    assert code != 0 and "magnitude" in out and "0.800" in out  # the table is out
    assert "[field: --csv]" in err and "No space left on device" in err and str(target) in err
    assert "Traceback" not in err and "This is a bug" not in err


def test_sweep_exports_every_point_and_each_file_runs_in_onnxruntime(capsys, tmp_path):
    """--export-dir: one verified ONNX file per point, named for the model, method and sparsity;
    each holds that point's zeros and reproduces its accuracy on the evaluation images."""
    import onnx
    from onnx import numpy_helper

    from core.export import pruned_file_name

    folder = tmp_path / "points"  # made by the command
    data = _json(capsys, "sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude,chita",
                 "--sparsities", "0.5,0.9", "--samples", "128", "--export-dir", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"digits_mlp_{m}_{s}.onnx" for m in ("magnitude", "chita") for s in (50, 90))
    bundle = load_bundle("digits")
    x = bundle.evaluation.x.numpy()
    for row in data["rows"]:
        path = row["export"]["path"]
        assert path == str(folder / pruned_file_name("demo:digits_mlp", row["method"], row["sparsity"]))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        weights = [numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer if t.dims and len(t.dims) == 2]
        zeros = sum(int((w == 0).sum()) for w in weights)
        assert zeros == sum(w.size for w in weights) - row["nonzeros"]
        pred = sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1)
        assert (pred == bundle.evaluation.y.numpy()).mean() == pytest.approx(row["accuracy"], abs=1e-9)
    assert pruned_file_name("../shared/models/resnet20_cifar10.pt", "chita++", 0.875) == \
        "resnet20_cifar10_chitapp_87p5.onnx"
    assert main(["sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude",
                 "--sparsities", "0.5", "-q", "--export-dir", str(folder / "digits_mlp_chita_50.onnx")]) == 2
    err = capsys.readouterr().err
    assert "--export-dir" in err and "folder you can write to" in err


def test_sparse_storage_from_prune_and_sweep(capsys, tmp_path):
    """--sparse-storage: the files hold the pruned weights as ONNX sparse initializers, are
    smaller than dense storage, and give the same predictions in onnxruntime; without a file to
    write the flag is refused naming itself."""
    import onnx

    x = load_bundle("digits").evaluation.x.numpy()

    def predictions(path) -> object:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1)

    argv = ("prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9")
    dense = _json(capsys, *argv, "--out", str(tmp_path / "dense.onnx"))["export"]
    sparse = _json(capsys, *argv, "--out", str(tmp_path / "sparse.onnx"), "--sparse-storage")["export"]
    assert dense["storage"] == "dense" and dense["sparse_tensors"] == 0
    assert sparse["storage"] == "sparse" and sparse["sparse_tensors"] == 3  # fc1, fc2, fc3 at 10% nonzeros
    assert sparse["onnx_bytes"] == (tmp_path / "sparse.onnx").stat().st_size < 0.5 * dense["onnx_bytes"]
    assert len(onnx.load(str(tmp_path / "sparse.onnx")).graph.sparse_initializer) == 3
    assert (predictions(tmp_path / "sparse.onnx") == predictions(tmp_path / "dense.onnx")).all()

    folder = tmp_path / "points"
    rows = _json(capsys, "sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude",
                 "--sparsities", "0.5,0.9", "--export-dir", str(folder), "--sparse-storage")["rows"]
    assert [r["export"]["sparse_tensors"] for r in rows] == [0, 3]  # at 50% dense storage is smaller
    assert [r["export"]["onnx_accuracy"] for r in rows] == [r["accuracy"] for r in rows]

    for args in (argv, ("sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude",
                        "--sparsities", "0.5")):
        assert main([*args, "--sparse-storage", "-q"]) == 2
        err = capsys.readouterr().err
        assert "--sparse-storage" in err and "What to do" in err


def test_layer_choice_reaches_prune_and_sweep(capsys):
    """--layers, --keep-first and --keep-last choose the pruned weights in prune and in sweep
    alike (sweep ignored --layers before): the budget is those layers', the others keep every
    weight, and the output names the layers left dense."""
    base = ("demo:digits_mlp", "--data", "digits")
    one = _json(capsys, "prune", *base, "--method", "magnitude", "--sparsity", "0.5", "--layers", "fc1.weight")
    assert (one["prunable_weights"], one["nonzeros"]) == (4096, 2048) and one["kept_dense"] == []
    rows = _json(capsys, "sweep", *base, "--methods", "magnitude", "--sparsities", "0.5",
                 "--layers", "fc1.weight")["rows"]
    assert [r["nonzeros"] for r in rows] == [2048]
    kept = _json(capsys, "prune", *base, "--method", "chita", "--sparsity", "0.7", "--samples", "128",
                 "--keep-first", "--keep-last")
    assert kept["kept_dense"] == ["fc1.weight", "fc3.weight"] and set(kept["layer_sparsity"]) == {"fc2.weight"}
    assert kept["prunable_weights"] == 2048 and kept["nonzeros"] == round(0.3 * 2048)
    sweep = _json(capsys, "sweep", *base, "--methods", "magnitude,chita", "--sparsities", "0.5,0.9",
                  "--samples", "128", "--keep-last")
    assert sweep["kept_dense"] == ["fc3.weight"]
    assert [r["nonzeros"] for r in sweep["rows"]] == [round(0.5 * 6144), round(0.1 * 6144)] * 2
    assert main(["prune", *base, "--sparsity", "0.5", "--layers", "fc1.weight", "--keep-first", "-q"]) == 2
    assert "leaves no layer to prune" in capsys.readouterr().err


def test_float16_weights_from_export_prune_and_sweep(capsys, tmp_path):
    """--float16: the files store their weight matrices in float16 (about half the bytes), are
    scored in onnxruntime beside PyTorch, and combine with --sparse-storage; without a file to
    write the flag is refused naming itself."""
    import onnx

    argv = ("prune", "demo:digits_mlp", "--data", "digits", "--method", "magnitude", "--sparsity", "0.9")
    dense = _json(capsys, *argv, "--out", str(tmp_path / "dense.onnx"))["export"]
    half = _json(capsys, *argv, "--out", str(tmp_path / "half.onnx"), "--float16")["export"]
    assert dense["float16_tensors"] == 0 and half["float16_tensors"] == 3  # fc1, fc2, fc3
    assert half["onnx_bytes"] < 0.55 * dense["onnx_bytes"] and half["interface"].endswith("float16 weights")
    assert abs(half["onnx_accuracy"] - half["pytorch_accuracy"]) <= 2 / 539
    types = {t.name: t.data_type for t in onnx.load(str(tmp_path / "half.onnx")).graph.initializer}
    assert types["fc1.weight__float16"] == onnx.TensorProto.FLOAT16 and types["fc1.bias"] == onnx.TensorProto.FLOAT
    both = _json(capsys, *argv, "--out", str(tmp_path / "both.onnx"), "--float16", "--sparse-storage")["export"]
    assert both["sparse_tensors"] >= 1 and both["onnx_bytes"] < half["onnx_bytes"]  # under 20% nonzero: sparse

    out = _json(capsys, "export", "demo:digits_mlp", "--out", str(tmp_path / "e.onnx"), "--float16",
                "--data", "digits")
    assert out["float16_tensors"] == 3 and out["scored_differently"] <= 2
    rows = _json(capsys, "sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude",
                 "--sparsities", "0.5,0.9", "--export-dir", str(tmp_path / "points"), "--float16")["rows"]
    assert [r["export"]["float16_tensors"] for r in rows] == [3, 3]

    for args in (argv, ("sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude",
                        "--sparsities", "0.5")):
        assert main([*args, "--float16", "-q"]) == 2
        err = capsys.readouterr().err
        assert "--float16 only applies" in err and "What to do" in err


def test_a_failed_export_keeps_the_sweep_and_says_so(capsys, tmp_path, monkeypatch):
    """An export that fails (here the second) stops the exports, not the sweep: every row is
    printed, the JSON names the error, and the status is 1."""
    import core.sweep as sweep_mod
    from core.errors import StudioError

    real, calls = sweep_mod.export_onnx, []

    def second_fails(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise StudioError("the exporter gave up", field="model", fix="none")
        return real(*a, **kw)

    monkeypatch.setattr(sweep_mod, "export_onnx", second_fails)
    code = main(["sweep", "demo:digits_mlp", "--data", "digits", "--methods", "magnitude,chita",
                 "--sparsities", "0.5,0.9", "--samples", "64", "--export-dir", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert code == 1 and len(data["rows"]) == 4 and "the exporter gave up" in data["export_error"]
    assert [r["export"] is not None for r in data["rows"]] == [True, False, False, False]
    assert "exporting the sweep's points failed: the exporter gave up" in err
    assert [p.name for p in tmp_path.iterdir()] == ["digits_mlp_magnitude_50.onnx"]


def test_sweep_leaves_the_model_untouched_and_accuracy_falls_with_sparsity():
    loaded = load_demo("digits_mlp")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    res = run_sweep(loaded.model, load_bundle("digits"), ["magnitude"], [0.3, 0.95], samples=64)
    acc = [r.eval.accuracy for r in res.series("magnitude")]
    assert acc[0] > acc[1]
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def test_sweep_computes_gradients_once_for_the_single_stage_methods(monkeypatch):
    """OBD, WoodFisher and CHITA share one G in a sweep; the rows equal separate runs."""
    import core.pruning as pruning

    calls = []
    real = pruning.fisher_factor

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(pruning, "fisher_factor", spy)
    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    res = run_sweep(loaded.model, bundle, ["obd", "magnitude", "woodfisher", "chita"], [0.5, 0.8],
                    samples=64, lam=1e-4)
    assert len(calls) == 1
    alone = pruning.prune(loaded.model, bundle.calibration,
                          pruning.PruneRequest(method="woodfisher", sparsity=0.8, samples=64, lam=1e-4))
    row = [r for r in res.series("woodfisher") if r.sparsity == 0.8][0]
    assert row.nonzeros == alone.nonzeros
    assert row.eval.accuracy == evaluate(pruning.apply_result(loaded.model, alone), bundle.evaluation).accuracy


def test_a_sweep_and_runs_share_gradients_through_one_cache(monkeypatch):
    """With the GUI's cache, a sweep after a run on the same model and sample takes its G (and
    the BatchNorm check), and a run after the sweep takes the sweep's: one gradient pass in all,
    and the rows equal the sweep without the cache."""
    import core.pruning as pruning

    calls = []
    real = pruning.fisher_factor
    monkeypatch.setattr(pruning, "fisher_factor", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    cache = pruning.GradientCache()
    pruning.prune(loaded.model, bundle.calibration,
                  pruning.PruneRequest(method="chita", sparsity=0.6, samples=64), cache=cache)
    shared = run_sweep(loaded.model, bundle, ["obd", "chita"], [0.5, 0.8], samples=64, cache=cache)
    after = pruning.prune(loaded.model, bundle.calibration,
                          pruning.PruneRequest(method="chita", sparsity=0.7, samples=64), cache=cache)
    assert len(calls) == 1 and after.info.get("gradients_reused") is True
    alone = run_sweep(loaded.model, bundle, ["obd", "chita"], [0.5, 0.8], samples=64)
    assert len(calls) == 2  # a sweep without the cache computes its own
    assert [(r.method, r.sparsity, r.nonzeros, r.eval.accuracy) for r in shared.rows] == \
        [(r.method, r.sparsity, r.nonzeros, r.eval.accuracy) for r in alone.rows]


def test_sweep_hands_each_point_over_as_it_is_finished():
    """on_partial gets the sweep so far after every point; its last call has the final rows
    (method, sparsity, accuracy, nonzeros), and prune_path's on_result names every sparsity once,
    CHITA++ branches first."""
    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    seen = []
    res = run_sweep(loaded.model, bundle, ["magnitude", "chita"], [0.8, 0.5], samples=64,
                    on_partial=seen.append)
    assert [len(p.rows) for p in seen] == [1, 2, 3, 4]
    assert all(p.meta["partial"] and p.meta["points"] == 4 for p in seen)
    assert "partial" not in res.meta
    assert [(r.method, r.sparsity) for r in seen[0].rows] == [("magnitude", 0.5)]  # ascending
    assert [(r.method, r.sparsity, r.eval.accuracy, r.nonzeros) for r in seen[-1].rows] == \
        [(r.method, r.sparsity, r.eval.accuracy, r.nonzeros) for r in res.rows]
    assert [(r.method, r.sparsity) for r in res.rows] == \
        [("magnitude", 0.8), ("magnitude", 0.5), ("chita", 0.8), ("chita", 0.5)]  # order asked

    from core.pruning import PruneRequest, prune_path

    order = []
    results = prune_path(loaded.model, bundle.calibration,
                         PruneRequest(method="chita++", sparsity=0.9, samples=64, stages=4),
                         [0.9, 0.5, 0.7], on_result=lambda i, r: order.append((i, r)))
    assert [i for i, _ in order] == [1, 2, 0]  # the branches finish before the sparsest
    assert all(results[i] is r for i, r in order)


def test_chitapp_hands_over_each_stage_as_it_is_solved():
    from core.pruning import PruneRequest, prune

    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    records = []
    res = prune(loaded.model, bundle.calibration,
                PruneRequest(method="chita++", sparsity=0.9, samples=64, stages=5), on_stage=records.append)
    finals = res.info["final"]
    assert [r["stage"] for r in records] == [1, 2, 3, 4, 5] and {r["stages"] for r in records} == {5}
    assert [r["objective"] for r in records] == [f["objective"] for f in finals]
    assert all(r["objective"] <= r["magnitude_objective"] for r in records)
    assert records[-1]["sparsity"] == pytest.approx(0.9) and records[-1]["target"] == 0.9


def test_a_sweep_keeps_its_points_weights_within_the_budget_asked():
    """keep_results: each row carries its PruneResult (the weights its accuracy was measured
    on) while they fit the byte budget, in the order the points finish; partial rows too; by
    default none is kept."""
    from core.pruning import apply_result

    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    partial = []
    res = run_sweep(loaded.model, bundle, ["magnitude", "chita"], [0.8, 0.5], samples=64,
                    keep_results=10**9, on_partial=partial.append)
    assert all(r.result is not None for r in res.rows)
    for r in res.rows:
        assert (r.result.request.method, r.result.request.sparsity) == (r.method, r.sparsity)
        assert r.result.nonzeros == r.nonzeros
        assert evaluate(apply_result(loaded.model, r.result), bundle.evaluation).accuracy == r.eval.accuracy
    assert [r.result is not None for r in partial[-1].rows] == [True] * 4
    one = res.rows[0].result.nbytes
    assert one == sum(t.numel() * t.element_size() for t in
                      [*res.rows[0].result.weights.values(), *res.rows[0].result.masks.values()])
    two = run_sweep(loaded.model, bundle, ["magnitude", "chita"], [0.8, 0.5], samples=64,
                    keep_results=2 * one)
    # finished in the order magnitude 0.5, 0.8, then CHITA: only magnitude's two fit
    assert [(r.method, r.result is not None) for r in two.rows] == \
        [("magnitude", True), ("magnitude", True), ("chita", False), ("chita", False)]
    assert all(r.result is None for r in run_sweep(loaded.model, bundle, ["magnitude"], [0.5], samples=64).rows)


def test_a_cancelled_sweep_keeps_its_finished_points():
    from core.errors import Cancelled
    from core.progress import CancelToken

    loaded, bundle = load_demo("digits_mlp"), load_bundle("digits")
    token, seen = CancelToken(), []

    def stop_after_first(partial):
        seen.append(partial)
        token.cancel()

    with pytest.raises(Cancelled):
        run_sweep(loaded.model, bundle, ["chita"], [0.5, 0.8, 0.9], samples=64,
                  on_partial=stop_after_first, cancel=token)
    assert len(seen) == 1 and [r.sparsity for r in seen[0].rows] == [0.5]
    assert 0.5 < seen[0].rows[0].eval.accuracy <= 1


def test_ctrl_c_during_a_sweep_prints_and_writes_the_finished_points(capsys, tmp_path, monkeypatch):
    """The CLI's sweep, interrupted after its first point, still prints that point and writes
    the CSV, then exits with 130."""
    import os
    import signal

    import core.sweep as sweep_mod

    real = sweep_mod.evaluate
    calls = []

    def interrupt_after_first_point(*args, **kw):
        out = real(*args, **kw)
        calls.append(1)
        if len(calls) == 2:  # the dense model, then the first point
            os.kill(os.getpid(), signal.SIGINT)  # cli.interruptible() sets the cancel token
        return out

    monkeypatch.setattr(sweep_mod, "evaluate", interrupt_after_first_point)
    path = tmp_path / "sweep.csv"
    code = main(["sweep", "demo", "--data", "digits", "--methods", "magnitude,chita",
                 "--sparsities", "0.5,0.9", "--samples", "64", "--csv", str(path), "-q",
                 "--export-dir", str(tmp_path / "onnx")])
    out, err = capsys.readouterr()
    assert code == 130
    assert "cancelled after 1 of 4 points" in err and str(path) in err and "Traceback" not in err
    assert "1 of 4 points finished" in out and "magnitude" in out
    # the export of the point finished when Ctrl-C came is cancelled too, and leaves nothing behind
    assert "exported: 0 of 1 points" in out and "magnitude at 0.5: cancelled before its export" in out
    assert list((tmp_path / "onnx").iterdir()) == []
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], float(r["sparsity"])) for r in rows] == [("dense", 0.0), ("magnitude", 0.5)]
