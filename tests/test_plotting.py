"""The sweep plot's axis ticks: round values that cover the data."""

from __future__ import annotations

import math

import pytest

from core.plotting import nice_ticks


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 0.98), (0.29, 0.96), (0.905, 0.935), (0.12, 0.131),
                                        (0.9, 0.9), (0.0, 0.0), (0.97, 1.0), (0.0, 1.0)])
def test_nice_ticks_are_round_evenly_spaced_and_cover_the_data(lo, hi):
    ticks = nice_ticks(lo, hi, lo_limit=0.0, hi_limit=1.0)
    assert 3 <= len(ticks) <= 11
    assert ticks[0] <= lo + 1e-12 and ticks[-1] >= min(hi, 1.0) - 1e-12
    assert 0.0 <= ticks[0] and ticks[-1] <= 1.0
    steps = [b - a for a, b in zip(ticks, ticks[1:])]
    step = steps[0]
    assert all(s == pytest.approx(step) for s in steps)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5)) < 1e-6
    assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks)  # multiples of the step


def test_the_previous_even_split_is_gone_for_a_typical_sweep():
    # 0.5 … 0.98 used to be labelled 50, 60, 69, 79, 88, 98%
    assert nice_ticks(0.5, 0.98, lo_limit=0.0, hi_limit=1.0) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_layer_ticks_name_few_layers_and_thin_out_the_numbers_of_many():
    """One bar per layer: names where they fit; the table's numbers otherwise, every one up to
    15 layers, then every 2nd, 5th, 10th, … (about 15 labels), the rest as unlabelled ticks."""
    from gui.plots import layer_ticks

    names = ["fc1", "fc2", "fc3"]
    assert layer_ticks(names) == ([[(0, "fc1"), (1, "fc2"), (2, "fc3")]], False)
    for n, labels in ((9, [str(i) for i in range(1, 10)]),
                      (30, [str(i) for i in range(2, 31, 2)]),
                      (59, ["1"] + [str(i) for i in range(5, 60, 5)]),
                      (400, ["1"] + [str(i) for i in range(50, 401, 50)])):
        (major, *minor), compact = layer_ticks([f"layer{i}" for i in range(n)])
        assert compact and [text for _, text in major] == labels
        assert sorted(i for i, _ in major + (minor[0] if minor else [])) == list(range(n))


def _eval(acc: float, half: float):
    from core.evaluate import EvalResult

    return EvalResult(acc, (acc - half, acc + half), 0.1, (0.09, 0.11), 500, int(500 * acc), 0.0)


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_a_one_sparsity_sweep_plots_the_methods_side_by_side(tmp_path, suffix):
    """A sweep at one sparsity (an N:M pattern's) has no curve to draw: each method gets an
    error bar at its own x, named under it, and the title names the pattern."""
    from core.plotting import write_sweep_plot
    from core.sweep import SweepResult, SweepRow

    rows = tuple(SweepRow(m, 0.5, _eval(a, 0.02), 50, 100, None, 1.0)
                 for m, a in (("magnitude", 0.8), ("chita", 0.9), ("woodfisher", 0.88)))
    result = SweepResult(rows, _eval(0.95, 0.01), 3.0, {"pattern": "2:4"})
    path = tmp_path / f"plot{suffix}"
    write_sweep_plot(result, path, title="model: accuracy against sparsity")
    assert path.stat().st_size > 1000
    if suffix == ".svg":
        svg = path.read_text()
        assert "model: accuracy by method at the 2:4 pattern (50%)" in svg
        labels = [t for t in ("Magnitude (global)", "CHITA", "WoodFisher (OBS)") if f">{t}</text>" in svg]
        assert len(labels) == 3
        assert svg.count("<circle") == 3 and "polyline" not in svg  # points, no curve
