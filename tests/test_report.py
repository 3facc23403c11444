"""The Markdown run report: every number it prints is the run's own, and it is written whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main
from core.data import load_bundle
from core.demo import load_demo
from core.errors import StudioError
from core.evaluate import evaluate, paired_difference
from core.export import export_onnx
from core.pruning import PruneRequest, apply_result, prune
from core.report import run_report, write_report


@pytest.fixture(scope="module")
def run():
    model = load_demo("digits_mlp").model
    bundle = load_bundle("digits")
    result = prune(model, bundle.calibration, PruneRequest(method="chita", sparsity=0.9, samples=128))
    mag = prune(model, bundle.calibration, PruneRequest(method="magnitude", sparsity=0.9))
    pruned = apply_result(model, result)
    return (model, bundle, result, evaluate(model, bundle.evaluation), evaluate(pruned, bundle.evaluation),
            evaluate(apply_result(model, mag), bundle.evaluation), pruned)


def test_the_report_holds_the_runs_numbers(run, tmp_path: Path):
    model, bundle, result, dense, pruned_ev, mag_ev, pruned = run
    export = export_onnx(pruned, bundle.evaluation.x[:2], tmp_path / "p.onnx", evaluation=bundle.evaluation,
                         reference=pruned_ev)
    text = run_report(result, model="demo:digits_mlp", dense=dense, pruned=pruned_ev, images=bundle.evaluation,
                      magnitude=mag_ev, export=export)
    for heading in ("# Pruning report: demo:digits_mlp", "## Run", "## Accuracy", "## Classes", "## Layers",
                    "## Solver", "## ONNX file"):
        assert heading in text
    lo, hi = pruned_ev.accuracy_ci
    assert f"| CHITA | {100 * pruned_ev.accuracy:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] |" in text
    d, m = paired_difference(pruned_ev, dense), paired_difference(pruned_ev, mag_ev)
    assert f"Change against dense: {100 * d.difference:+.2f} points" in text
    assert f"Change against magnitude at the same sparsity: {100 * m.difference:+.2f} points" in text
    assert f"{result.nonzeros:,} of {result.total:,} kept" in text
    assert f"`{export.path}`: {export.onnx_bytes:,} bytes" in text
    # one table row per class present and per pruned weight
    assert sum(line.startswith("| class ") and line[8].isdigit() for line in text.splitlines()) == 10
    assert all(f"| {k} |" in text for k in result.layer_sparsity)
    final = result.info["final"][-1]
    assert f"{final['objective']:.6g}" in text and f"{final['iterations']} swap steps" in text


def test_a_report_without_an_export_or_classes_leaves_those_out(run):
    model, bundle, result, dense, pruned_ev, _, _ = run
    text = run_report(result, model="m", dense=dense, pruned=pruned_ev)
    assert "## ONNX file" not in text and "## Classes" not in text and "magnitude, same sparsity" not in text


def test_write_report_is_atomic_and_names_a_missing_folder(tmp_path: Path):
    path = write_report("# hello\n", str(tmp_path / "r.md"))
    assert Path(path).read_text() == "# hello\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]  # no temporary file left
    with pytest.raises(StudioError) as info:
        write_report("x", str(tmp_path / "missing" / "r.md"))
    assert "missing" in str(info.value) and "[field: --report]" in str(info.value)


def test_cli_prune_writes_the_report(capsys, tmp_path: Path):
    report = tmp_path / "run.md"
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.8",
                 "--out", str(tmp_path / "p.onnx"), "--report", str(report), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["report"] == str(report)
    text = report.read_text()
    assert "Magnitude" in text and f"{100 * data['accuracy']:.2f}%" in text and "## ONNX file" in text
    assert f"chita-studio prune demo --data digits --method magnitude --sparsity 0.8 --out {tmp_path / 'p.onnx'}" in text
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.8",
                 "--report", str(tmp_path / "run.txt")])
    _, err = capsys.readouterr()
    assert code == 2 and "--report" in err and ".md" in err  # refused before any work


def test_cli_prune_versus_magnitude_measures_the_baseline_on_the_same_images(capsys, tmp_path: Path):
    report = tmp_path / "chita.md"
    code = main(["prune", "demo", "--data", "digits", "--method", "chita", "--sparsity", "0.8", "--samples", "128",
                 "--versus-magnitude", "--report", str(report), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    mag = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.8", "--json"])
    mag_data = json.loads(capsys.readouterr()[0])
    assert mag == 0 and data["magnitude_accuracy"] == mag_data["accuracy"]  # the same magnitude run
    assert data["vs_magnitude"] == pytest.approx(data["accuracy"] - data["magnitude_accuracy"])
    lo, hi = data["vs_magnitude_ci"]
    assert lo <= data["vs_magnitude"] <= hi
    text = report.read_text()
    assert "| magnitude, same sparsity |" in text and "Change against magnitude at the same sparsity:" in text
    code = main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--sparsity", "0.8",
                 "--versus-magnitude", "--json"])
    assert code == 0 and "vs_magnitude" not in json.loads(capsys.readouterr()[0])  # magnitude itself


def test_cli_prune_points_to_chita_plus_plus_where_chita_is_level_with_magnitude(capsys, tmp_path: Path,
                                                                                  monkeypatch):
    """On the digits CHITA is clearly ahead of magnitude at 80%, so there is no hint; where
    core.pruning.stages_hint gives one (ResNet20 at 80%: level with magnitude), the CLI prints it,
    puts it in --json and the report, called with the run's two paired differences."""
    import core.pruning

    argv = ["prune", "demo", "--data", "digits", "--method", "chita", "--sparsity", "0.8", "--samples", "128",
            "--versus-magnitude"]
    assert main(argv + ["--json"]) == 0
    data = json.loads(capsys.readouterr()[0])
    assert data["vs_magnitude_ci"][0] > 0 and "hint" not in data
    seen = []

    def hint(method, versus_dense, versus_magnitude):
        seen.append((method, versus_dense.ci, versus_magnitude.ci))
        return "Try CHITA++."

    monkeypatch.setattr(core.pruning, "stages_hint", hint)
    report = tmp_path / "r.md"
    assert main(argv + ["--report", str(report)]) == 0
    out = capsys.readouterr()[0]
    assert "Hint:       Try CHITA++. (--method chita++)" in out
    assert "- Try CHITA++." in report.read_text()
    assert seen[0][0] == "chita" and tuple(seen[0][2]) == tuple(data["vs_magnitude_ci"])
