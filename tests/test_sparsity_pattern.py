"""N:M semi-structured sparsity: blocks, selections, CHITA against brute force, every method end to end."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
import torch

from core.cli import main as cli_main
from core.data import load_bundle
from core.demo import load_demo
from core.errors import StudioError
from core.methods.chita import backsolve, chita_solve, objective_lower_bound
from core.methods.selection import select
from core.pruning import PruneRequest, apply_result, prune, prune_path, validate_request
from core.sparsity_pattern import (
    Pattern,
    block_budget,
    block_mask,
    check_pattern,
    held_patterns,
    layer_blocks,
    parse_pattern,
    partial_budget,
    pattern_violations,
)


def test_parse_pattern_reads_n_of_m_and_refuses_the_rest():
    assert parse_pattern("2:4") == Pattern(2, 4) and parse_pattern(" 4 : 8 ") == Pattern(4, 8)
    assert parse_pattern("") is None and parse_pattern(None) is None and parse_pattern("unstructured") is None
    assert Pattern(2, 4).sparsity == 0.5 and str(Pattern(1, 4)) == "1:4"
    for bad in ("2/4", "4:4", "0:4", "2:64", "two:four"):
        with pytest.raises(StudioError) as err:
            parse_pattern(bad)
        assert err.value.field == "pattern"


def test_blocks_run_along_the_input_dimension_at_each_kernel_position():
    """Block (o, c₀, t) of a conv weight holds w[o, 4c₀ … 4c₀+3, t]: the input channels at one
    kernel position, as sparse tensor cores take 2:4 for convolutions; a Linear's blocks are
    4 consecutive inputs of a row."""
    w = torch.arange(3 * 8 * 2 * 2).reshape(3, 8, 2, 2)
    blocks = layer_blocks(w.shape, Pattern(2, 4))
    assert blocks.shape == (3 * 2 * 4, 4)
    flat = w.reshape(-1)
    expected = {tuple(w[o, 4 * c0:4 * c0 + 4, i, j].tolist())
                for o in range(3) for c0 in range(2) for i in range(2) for j in range(2)}
    assert {tuple(flat[b].tolist()) for b in blocks} == expected
    lin = torch.arange(2 * 8).reshape(2, 8)
    assert layer_blocks(lin.shape, Pattern(1, 4), offset=100).tolist() == \
        [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109, 110, 111], [112, 113, 114, 115]]


def test_partial_budget_takes_the_cheapest_blocks_and_keeps_them():
    """A CHITA++ stage on the way to 2:4: the pattern on ``count`` blocks, those whose two
    smallest w̄² sum least, the rest kept whole; after pruning them their cost is 0, so the next
    stage's larger count takes them again."""
    budget = block_budget(["a", "d"], [(3, 8), (2, 3)], Pattern(2, 4))  # 6 blocks and 6 dense
    wbar = torch.randn(30, generator=torch.Generator().manual_seed(1))
    part = partial_budget(budget, wbar, 2)
    cost = (torch.sort(wbar[budget.blocks] ** 2, dim=1).values[:, :2]).sum(1)
    cheapest = {tuple(budget.blocks[i].tolist()) for i in torch.argsort(cost)[:2].tolist()}
    assert {tuple(b.tolist()) for b in part.blocks} == cheapest
    assert part.dense.numel() == 6 + 4 * 4 and part.kept == 2 * 2 + 22
    mask = select(wbar.abs(), part, [])
    pruned = torch.where(mask, wbar, torch.zeros_like(wbar))
    later = partial_budget(budget, pruned, 4)
    assert cheapest <= {tuple(b.tolist()) for b in later.blocks}
    assert partial_budget(budget, wbar, 6) is budget


def test_block_mask_keeps_the_n_largest_of_each_block_and_dense_layers_whole():
    budget = block_budget(["a", "b", "c"], [(4, 8), (2, 3), (2, 4, 3)], Pattern(2, 4))
    assert budget.dense_layers == ("b",) and budget.dense.tolist() == list(range(32, 38))
    scores = torch.randn(32 + 6 + 24, generator=torch.Generator().manual_seed(0))
    mask = select(scores, budget, [])
    assert int(mask.sum()) == budget.kept == 2 * (8 + 6) + 6
    assert mask[32:38].all()
    for block in budget.blocks:
        kept = block[mask[block]]
        assert kept.numel() == 2
        assert scores[kept].min() >= scores[block[~mask[block]]].max()
    # the weights this mask keeps satisfy the pattern; a dense weight does not
    w = torch.where(mask, scores, torch.zeros_like(scores))
    assert pattern_violations(w[:32].view(4, 8), Pattern(2, 4)) == 0
    assert pattern_violations(torch.ones(4, 8), Pattern(2, 4)) == 8
    assert pattern_violations(torch.ones(2, 3), Pattern(2, 4)) is None


def _brute_force_blocks(A, wbar, lam, budget):
    """min over every support with N of each block (dense positions kept) of the backsolve."""
    p = wbar.numel()
    H = A.double().T @ A.double() + lam * torch.eye(p, dtype=torch.float64)
    wb = wbar.double()
    choices = [list(itertools.combinations(b.tolist(), budget.pattern.n)) for b in budget.blocks]
    best = float("inf")
    for combo in itertools.product(*choices):
        S = torch.tensor(sorted([i for c in combo for i in c] + budget.dense.tolist()))
        on = torch.zeros(p, dtype=torch.bool)
        on[S] = True
        d = torch.where(on, 0.0, -wb)
        d[S] = torch.linalg.solve(H[S][:, S], -(H[S] @ d))
        best = min(best, float(0.5 * d @ H @ d))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_chita_with_blocks_reaches_the_best_n_of_m_support(seed):
    """Random quadratic (full-rank Fisher, n = 24, p = 14: three 2:4 blocks and a dense layer of
    2): the search, swapping inside blocks only, ends within 1% of the brute-force best of all
    6³ supports, keeps 2 in every block and never ends above the magnitude backsolve."""
    g = torch.Generator().manual_seed(seed)
    A, wbar = torch.randn(24, 14, generator=g) / 24**0.5, torch.randn(14, generator=g)
    A[:, 1::2] = 0.7 * A[:, 0::2] + 0.3 * A[:, 1::2]  # correlated columns: magnitude is a poor guess
    budget = block_budget(["a", "b"], [(3, 4), (1, 2)], Pattern(2, 4))
    best = _brute_force_blocks(A, wbar, 1e-3, budget)
    sol = chita_solve(A, wbar, budget, [slice(0, 12), slice(12, 14)], 1e-3)
    assert sol.mask[budget.blocks].sum(1).tolist() == [2, 2, 2] and sol.mask[12:].all()
    assert int((sol.weights != 0).sum()) == budget.kept
    _, magnitude = backsolve(A, wbar, block_mask(wbar.abs(), budget), 1e-3)
    assert sol.objective <= magnitude + 1e-12
    assert best * (1 - 1e-5) <= sol.objective <= best * 1.01, (sol.objective, best)  # float32 A
    assert objective_lower_bound(wbar, budget, [], 1e-3) <= best


def test_chita_with_blocks_when_n_is_below_p():
    """n = 8 < p = 16 (as in pruning): a local search; most instances reach the best support,
    none ends below it (that would be a wrong objective) or above its start."""
    ratios = []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        A, wbar = torch.randn(8, 16, generator=g) / 8**0.5, torch.randn(16, generator=g)
        budget = block_budget(["a"], [(2, 8)], Pattern(2, 4))
        best = _brute_force_blocks(A, wbar, 0.05, budget)
        sol = chita_solve(A, wbar, budget, [slice(0, 16)], 0.05)
        assert sol.objective <= sol.start_objective + 1e-12 and sol.objective >= best * (1 - 1e-6)
        ratios.append(sol.objective / best)
    assert sum(r <= 1.01 for r in ratios) >= 6, ratios


@pytest.fixture(scope="module")
def digits():
    return load_bundle("digits")


@pytest.mark.parametrize("method", ["magnitude", "obd", "woodfisher", "chita", "chita++"])
def test_every_method_prunes_to_the_pattern(digits, method):
    """digits_cnn under 2:4: conv1 (one input channel) stays dense and is named; conv2 and fc
    hold exactly 2 nonzeros in every block of 4 input channels / inputs, so exactly half of
    their weights; the input model is untouched."""
    model = load_demo("digits_cnn").model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune(model, digits.calibration, PruneRequest(method=method, sparsity=0.5, pattern="2:4",
                                                           samples=128, lam=1e-5, stages=4), arch="digits_cnn")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    info = result.info["pattern"]
    assert info["pattern"] == "2:4" and info["dense_layers"] == ["conv1.weight"]
    assert info["blocks"] == (32 * 16 * 9 + 10 * 512) // 4
    pruned = apply_result(model, result)
    params = dict(pruned.named_parameters())
    assert check_pattern({n: params[n] for n in ("conv1.weight", "conv2.weight", "fc.weight")},
                         Pattern(2, 4)) == {"conv1.weight": None, "conv2.weight": 0, "fc.weight": 0}
    for name in ("conv2.weight", "fc.weight"):
        assert int(torch.count_nonzero(params[name])) == params[name].numel() // 2
        assert result.layer_sparsity[name] == 0.5
    assert result.layer_sparsity["conv1.weight"] == 0.0
    assert result.nonzeros == info["blocks"] * 2 + 16 * 9


def test_pattern_requests_are_checked(digits):
    """A sparsity other than the pattern's and a sweep over sparsities are refused by name; a
    malformed pattern too."""
    for request, field in ((PruneRequest(method="chita", sparsity=0.7, pattern="2:4"), "sparsity"),
                           (PruneRequest(method="chita", sparsity=0.5, pattern="2-4"), "pattern")):
        with pytest.raises(StudioError) as err:
            validate_request(request)
        assert err.value.field == field
    model = load_demo("digits_mlp").model
    with pytest.raises(StudioError, match="sweep") as err:
        prune_path(model, digits.calibration, PruneRequest(method="magnitude", sparsity=0.5, pattern="2:4"),
                   [0.5, 0.75])
    assert err.value.field == "pattern"


def test_held_patterns_finds_what_every_block_keeps():
    w = torch.tensor([[1.0, 0, 2, 0, 0, 0, 3, 4]])
    assert held_patterns({"a": w, "b": torch.ones(2, 3)}) == {"2:4": ["b"], "4:8": ["b"]}
    assert held_patterns({"a": torch.ones(2, 8)}) == {}
    assert held_patterns({"b": torch.zeros(2, 3)}) == {}  # no blocks anywhere: nothing to say


def test_cli_prune_with_a_pattern_and_info_on_its_export(capsys, tmp_path):
    """``prune --pattern 2:4`` takes the pattern's sparsity, reports the blocks and holds them in
    the JSON; its export reads the pattern back from the file it wrote, and that file opens with
    the pattern held in every block (``info``);
    without --sparsity or --pattern it says what to add."""
    out = tmp_path / "cnn24.onnx"
    code = cli_main(["prune", "demo:digits_cnn", "--data", "digits", "--method", "magnitude", "--pattern", "2:4",
                     "--samples", "64", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pattern"]["pattern"] == "2:4" and data["requested_sparsity"] == 0.5
    assert data["pattern"]["dense_layers"] == ["conv1.weight"]
    assert data["nonzeros"] == data["pattern"]["blocks"] * 2 + data["pattern"]["dense_weights"]
    # the export reads the pattern back from the written file (1:4 does not hold: 2 kept of 4)
    assert data["export"]["sparsity_patterns"] == {"2:4": ["conv1.weight"], "4:8": ["conv1.weight"]}
    assert cli_main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sparsity_patterns"]["2:4"] == ["conv1.weight"]
    assert cli_main(["info", "demo:digits_cnn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sparsity_patterns"] == {}  # a dense model keeps none
    assert cli_main(["prune", "demo", "--data", "digits", "--method", "magnitude", "--quiet"]) != 0
    assert "--pattern 2:4" in capsys.readouterr().err


def test_cli_sweep_compares_methods_at_a_pattern(capsys, tmp_path):
    """``sweep --pattern 2:4`` without --sparsities compares the methods at the pattern's
    sparsity, each point in the pattern, against magnitude under it; other sparsities are
    refused before any work."""
    code = cli_main(["sweep", "demo:digits_cnn", "--data", "digits", "--methods", "magnitude,chita",
                     "--pattern", "2:4", "--samples", "64", "--csv", str(tmp_path / "s.csv"), "--json", "--quiet"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    with open(tmp_path / "s.csv", newline="") as fh:
        assert [r["pattern"] for r in csv.DictReader(fh)] == ["", "2:4", "2:4"]  # dense, then the points
    assert data["pattern"] == "2:4" and data["pattern_dense"] == ["conv1.weight"]
    assert [(r["method"], r["sparsity"]) for r in data["rows"]] == [("magnitude", 0.5), ("chita", 0.5)]
    assert data["rows"][0]["nonzeros"] == data["rows"][1]["nonzeros"]
    assert data["rows"][1]["vs_magnitude"] is not None
    assert cli_main(["sweep", "demo", "--data", "digits", "--pattern", "2:4", "--sparsities", "0.5,0.7",
                     "--quiet"]) != 0
    assert "the pattern 2:4 sets the sparsity to 50%" in capsys.readouterr().err


def test_refining_a_pattern_run_keeps_the_pattern(digits):
    """Refinement moves the kept weights with the mask fixed: a 2:4 result stays 2:4, with the
    same nonzeros, and says it was refined."""
    from core.pruning import refine_result

    model = load_demo("digits_mlp").model
    result = prune(model, digits.calibration, PruneRequest(method="chita", sparsity=0.5, pattern="2:4",
                                                           samples=128, lam=1e-5), arch="digits_mlp")
    refined = refine_result(model, digits.calibration, result, 2, arch="digits_mlp")
    assert refined.request.pattern == "2:4" and refined.nonzeros == result.nonzeros
    assert all(torch.equal(refined.masks[k], result.masks[k]) for k in result.masks)
    assert set(check_pattern(refined.weights, Pattern(2, 4)).values()) == {0}
    assert refined.info["refinement"]


def test_transposed_convolutions_stay_dense_under_a_pattern():
    """A ConvTranspose weight is (in, out, k…): its dim 1 is not its input dimension, so the
    pattern leaves it dense and names it; the Linear beside it takes the pattern."""
    from torch import nn

    from core.data import ImageSet

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(1, 4, 2, stride=2)
            self.fc = nn.Linear(4 * 16 * 16, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.up(x)).flatten(1))

    g = torch.Generator().manual_seed(0)
    images = ImageSet(x=torch.randn(200, 1, 8, 8, generator=g), y=torch.randint(0, 10, (200,), generator=g),
                      source="random")
    result = prune(Net(), images, PruneRequest(method="magnitude", sparsity=0.5, pattern="2:4"))
    assert result.info["pattern"]["dense_layers"] == ["up.weight"]
    assert result.layer_sparsity["up.weight"] == 0.0 and result.layer_sparsity["fc.weight"] == 0.5


def test_a_pruned_models_zeros_stay_zeros(digits):
    """A model pruned before keeps its zeros whatever comes next: 2:4 then 1:4 with CHITA
    (whose swaps could bring a zero weight back) revives none; OBD at the model's own sparsity
    keeps no zero weight in its mask (their saliency 0 ties with dead inputs'), so the nonzeros
    it reports are the weights' own; an unstructured 90% model under 2:4 is not refused: blocks
    with fewer than 2 nonzeros keep those (N:M is at most N)."""
    model = load_demo("digits_mlp").model
    kw = dict(samples=128, lam=1e-5)

    def own_zeros_revived(before, result):
        return sum(int(((before.get_parameter(n) == 0) & (w != 0)).sum()) for n, w in result.weights.items())

    def true_nonzeros(result):
        return sum(int(torch.count_nonzero(w)) for w in result.weights.values())

    two_four = apply_result(model, prune(model, digits.calibration,
                                         PruneRequest(method="chita", sparsity=0.5, pattern="2:4", **kw)))
    one_four = prune(two_four, digits.calibration, PruneRequest(method="chita", sparsity=0.75, pattern="1:4", **kw))
    assert own_zeros_revived(two_four, one_four) == 0
    assert set(check_pattern(one_four.weights, Pattern(1, 4)).values()) == {0}
    assert one_four.nonzeros == true_nonzeros(one_four) == one_four.total // 4
    half = apply_result(model, prune(model, digits.calibration, PruneRequest(method="magnitude", sparsity=0.5)))
    obd = prune(half, digits.calibration, PruneRequest(method="obd", sparsity=0.5, **kw))
    assert obd.nonzeros == true_nonzeros(obd) and own_zeros_revived(half, obd) == 0
    sparse = apply_result(model, prune(model, digits.calibration, PruneRequest(method="magnitude", sparsity=0.9)))
    for method in ("magnitude", "chita"):
        res = prune(sparse, digits.calibration, PruneRequest(method=method, sparsity=0.5, pattern="2:4", **kw))
        assert own_zeros_revived(sparse, res) == 0 and res.nonzeros == true_nonzeros(res)
        assert set(check_pattern(res.weights, Pattern(2, 4)).values()) == {0} and res.sparsity > 0.9
