"""ONNX export: atomic, verified in onnxruntime, zeros preserved, caller's model untouched."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import core.export as export_mod
from core.errors import Cancelled, StudioError
from core.export import ExportReport, export_onnx, onnx_sizes
from core.progress import CancelToken


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def _pruned_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():
        model.fc.weight[:, ::2] = 0.0  # half of the Linear weights
        model.conv.weight[:3] = 0.0  # three whole filters
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    return model.eval()


def _onnx_run(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_export_verifies_outputs_zeros_and_sizes(tmp_path):
    model = _pruned_cnn()
    out = tmp_path / "model.onnx"
    reports = []
    batch = torch.randn(5, 3, 16, 16)
    report = export_onnx(model, torch.randn(1, 3, 16, 16), out, verify_batch=batch, progress=reports.append)

    assert isinstance(report, ExportReport)
    assert os.listdir(tmp_path) == ["model.onnx"]  # nothing else next to it
    assert report.path == str(out)
    assert report.onnx_bytes == out.stat().st_size > 0
    assert 0 < report.compressed_bytes < report.onnx_bytes
    assert report.max_abs_diff < 1e-4
    assert report.opset >= 13
    assert report.verify_batch_size == 5
    onnx.checker.check_model(str(out))

    # an independent run, on a batch size that was neither the sample's nor the verify batch's
    x = torch.randn(7, 3, 16, 16)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(_onnx_run(out, x), expected, atol=1e-4)

    assert set(report.zero_fractions) == {"conv.weight", "fc.weight"}
    assert report.zero_fractions["fc.weight"] == (0.5, 0.5)
    assert report.zero_fractions["conv.weight"] == (3 / 8, 3 / 8)
    stages = [p.stage for p in reports]
    assert stages[0] == "export" and stages[-1] == "verify" and set(stages) == {"export", "verify"}
    assert reports[-1].fraction == 1.0


def test_compressed_size_rewards_sparsity():
    torch.manual_seed(1)
    dense = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    sparse = _copy_with_zeros(dense, fraction=0.9)
    sample = torch.randn(1, 1, 8, 8)
    dense_bytes, dense_deflate, dense_sparse_storage, dense_sparse_deflate = onnx_sizes(dense, sample)
    sparse_bytes, sparse_deflate, sparse_sparse_storage, _ = onnx_sizes(sparse, sample)
    assert dense_sparse_deflate == dense_deflate
    assert sparse_bytes == dense_bytes  # unstructured zeros are still stored
    assert sparse_deflate < 0.5 * dense_deflate
    assert dense_sparse_storage == dense_bytes  # no tensor of the dense model qualifies
    assert sparse_sparse_storage < 0.4 * sparse_bytes  # 10% nonzeros at 12 bytes each, not 4 bytes each


def _copy_with_zeros(model: nn.Module, fraction: float) -> nn.Module:
    import copy

    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                cut = w.abs().flatten().kthvalue(max(1, int(fraction * w.numel()))).values
                w[w.abs() <= cut] = 0.0
    return pruned


def test_onnx_sizes_match_the_written_file(tmp_path):
    model = _pruned_cnn()
    sample = torch.randn(1, 3, 16, 16)
    sizes = onnx_sizes(model, sample)
    report = export_onnx(model, sample, tmp_path / "m.onnx")
    assert sizes[:2] == (report.onnx_bytes, report.compressed_bytes)
    assert not report.sparse and report.sparse_tensors == 0
    # the download size: deflate at zlib's default level, as gzip and zip write it
    assert report.compressed_bytes == len(zlib.compress((tmp_path / "m.onnx").read_bytes(), 6))


def _sparse_mlp(fraction: float) -> nn.Module:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    return _copy_with_zeros(model, fraction)


def test_sparse_storage_keeps_every_value_and_shrinks_the_file(tmp_path):
    model = _sparse_mlp(0.9)
    sample, x = torch.randn(1, 1, 8, 8), torch.randn(9, 1, 8, 8)
    dense = export_onnx(model, sample, tmp_path / "dense.onnx")
    sparse = export_onnx(model, sample, tmp_path / "sparse.onnx", sparse=True)
    assert sparse.sparse and sparse.sparse_tensors == 2 and not dense.sparse
    assert sparse.onnx_bytes == (tmp_path / "sparse.onnx").stat().st_size < 0.4 * dense.onnx_bytes
    assert sparse.zero_fractions == dense.zero_fractions

    proto = onnx.load(str(tmp_path / "sparse.onnx"))
    onnx.checker.check_model(proto)
    stored = {t.values.name: t for t in proto.graph.sparse_initializer}
    assert set(stored) == {"1.weight", "3.weight"}  # the biases stay dense
    assert {i.name for i in proto.graph.initializer} == {"1.bias", "3.bias"}
    params = dict(model.named_parameters())
    for name, tensor in stored.items():
        w = params[name].detach().numpy()
        assert onnx.numpy_helper.to_array(tensor.indices).dtype == np.int64
        assert tensor.values.dims[0] == np.count_nonzero(w)
        back = export_mod.dense_array(tensor)
        assert back.dtype == w.dtype and back.shape == w.shape
        assert np.array_equal(back.view(np.uint32), w.view(np.uint32))  # bit for bit

    # the same outputs as the dense file in onnxruntime, and as PyTorch
    np.testing.assert_array_equal(_onnx_run(tmp_path / "sparse.onnx", x), _onnx_run(tmp_path / "dense.onnx", x))
    with torch.no_grad():
        np.testing.assert_allclose(_onnx_run(tmp_path / "sparse.onnx", x), model(x).numpy(), atol=1e-5)
    sizes = onnx_sizes(model, sample)
    assert (sizes.sparse_bytes, sizes.sparse_compressed_bytes) == (sparse.onnx_bytes, sparse.compressed_bytes)
    assert (sizes.onnx_bytes, sizes.compressed_bytes) == (dense.onnx_bytes, dense.compressed_bytes)


def test_sparse_storage_leaves_tensors_that_would_grow_dense(tmp_path):
    model = _sparse_mlp(0.5)  # half nonzero: 12 bytes for each of them beats 4 bytes for every weight
    sample = torch.randn(1, 1, 8, 8)
    dense = export_onnx(model, sample, tmp_path / "dense.onnx")
    sparse = export_onnx(model, sample, tmp_path / "sparse.onnx", sparse=True)
    assert sparse.sparse and sparse.sparse_tensors == 0
    assert (tmp_path / "sparse.onnx").read_bytes() == (tmp_path / "dense.onnx").read_bytes()
    assert "no weight tensor has fewer than a third" in export_mod.describe_storage(sparse)
    assert "dense (every weight" in export_mod.describe_storage(dense)


def test_sparse_storage_threshold_is_the_byte_count():
    from onnx import numpy_helper

    n = 120  # float32: sparse while 12 bytes × nonzeros < 4 bytes × 120, i.e. under 40 nonzeros
    for nonzeros, moved in ((39, True), (40, False)):
        w = np.zeros(n, dtype=np.float32)
        w[:nonzeros] = 1.5
        got = export_mod._as_sparse(numpy_helper.from_array(w, name="w"))
        assert (got is not None) == moved, nonzeros
    ints = numpy_helper.from_array(np.zeros(120, dtype=np.int64), name="shape")
    assert export_mod._as_sparse(ints) is None  # only floating-point tensors


def test_dense_array_reads_coordinate_indices():
    from onnx import helper, numpy_helper

    values = numpy_helper.from_array(np.array([1.0, -2.0], dtype=np.float32), name="w")
    coords = numpy_helper.from_array(np.array([[0, 2], [1, 0]], dtype=np.int64), name="w_idx")
    got = export_mod.dense_array(helper.make_sparse_tensor(values, coords, [2, 3]))
    np.testing.assert_array_equal(got, np.array([[0, 0, 1.0], [-2.0, 0, 0]], dtype=np.float32))


def _labelled(n: int = 40):
    from core.data import ImageSet

    g = torch.Generator().manual_seed(3)
    return ImageSet(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g), "random")


def test_export_scores_the_file_on_evaluation_images_in_onnxruntime(tmp_path):
    from core.evaluate import evaluate

    model, images = _pruned_cnn(), _labelled()
    expected = evaluate(model, images)
    stages = []
    report = export_onnx(model, images.x[:2], tmp_path / "m.onnx", evaluation=images,
                         progress=lambda p: stages.append(p.stage))
    assert report.onnx_eval.n == 40 and report.reference_eval.n == 40
    assert report.onnx_eval.accuracy == expected.accuracy == report.reference_eval.accuracy
    assert torch.equal(report.onnx_eval.hits, expected.hits) and report.scored_differently == 0
    assert report.onnx_eval.loss == pytest.approx(expected.loss, abs=1e-5)
    assert "accuracy in onnxruntime" in stages and stages[-1] == "verify"
    assert "on 40 evaluation images in onnxruntime" in export_mod.describe_onnx_accuracy(report)
    assert "no image scored differently" in export_mod.describe_onnx_accuracy(report)
    # evaluate_onnx scores any written file the same way
    again = export_mod.evaluate_onnx(tmp_path / "m.onnx", images)
    assert torch.equal(again.hits, expected.hits)
    # without images: nothing scored, as before
    plain = export_onnx(model, images.x[:2], tmp_path / "p.onnx")
    assert plain.onnx_eval is None and plain.scored_differently is None
    assert export_mod.describe_onnx_accuracy(plain) is None


def test_export_compares_the_file_with_the_callers_reference(tmp_path):
    """A reference EvalResult (the run's, in the app) is used as PyTorch's side; one measured
    on other images is refused, and a file that scores differently is reported, not hidden."""
    from dataclasses import replace

    from core.evaluate import evaluate

    model, images = _pruned_cnn(), _labelled()
    truth = evaluate(model, images)
    flipped = truth.hits.clone()
    flipped[:3] = ~flipped[:3]
    other = replace(truth, hits=flipped, correct=int(flipped.sum()), accuracy=float(flipped.float().mean()))
    report = export_onnx(model, images.x[:2], tmp_path / "m.onnx", evaluation=images, reference=other)
    assert report.reference_eval is other and report.scored_differently == 3
    assert "3 images scored differently" in export_mod.describe_onnx_accuracy(report)
    with pytest.raises(StudioError, match="measured on 20 images"):
        export_onnx(model, images.x[:2], tmp_path / "bad.onnx", evaluation=images,
                    reference=evaluate(model, _labelled(20)))
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # nothing of the refused export


def test_callers_model_is_untouched_even_in_training_mode(tmp_path):
    model = _pruned_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = export_onnx(model, torch.randn(4, 3, 16, 16), tmp_path / "m.onnx")
    after = model.state_dict()
    assert model.training and model.bn.training
    assert before.keys() == after.keys()
    for key in before:  # bit-identical, BatchNorm statistics included
        assert torch.equal(before[key], after[key]), key
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())

    x = torch.randn(3, 3, 16, 16)  # the file holds the eval-mode network
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.testing.assert_allclose(_onnx_run(tmp_path / "m.onnx", x), expected, atol=1e-4)
    assert report.max_abs_diff < 1e-4


def test_failed_verification_leaves_existing_file_and_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")
    (tmp_path / "notes.txt").write_text("unrelated")
    listing = sorted(os.listdir(tmp_path))

    def fail(*args, **kwargs):
        raise StudioError("simulated verification failure")

    monkeypatch.setattr(export_mod, "_compare_outputs", fail)
    with pytest.raises(StudioError, match="simulated"):
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), target)
    assert target.read_bytes() == b"the previous export"
    assert sorted(os.listdir(tmp_path)) == listing


def test_zero_count_mismatch_is_refused(tmp_path, monkeypatch):
    real = export_mod._onnx_tensors

    def one_zero_lost(data):
        tensors = real(data)
        w = tensors["fc.weight"].copy()
        w[0, 0] = 1.0  # this weight is zero in PyTorch
        tensors["fc.weight"] = w
        return tensors

    monkeypatch.setattr(export_mod, "_onnx_tensors", one_zero_lost)
    with pytest.raises(StudioError, match="fc.weight has 640 zeros in PyTorch but 639 in ONNX"):
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_large_outputs_are_compared_relative_to_their_size(tmp_path, monkeypatch):
    # an untrained deep network's logits reach 1e4-1e7 (torchvision's ResNet-152: 8.7e6): float32
    # rounding alone then exceeds an absolute 1e-3, yet the file is right
    model = _pruned_cnn()
    with torch.no_grad():
        model.fc.weight.mul_(1e6)
        model.fc.bias.mul_(1e6)
    x = torch.randn(64, 3, 16, 16)
    report = export_onnx(model, x[:1], tmp_path / "big.onnx", verify_batch=x)
    with torch.no_grad():
        largest = float(model(x).abs().max())
    assert largest > 1e5
    assert 0 < report.max_abs_diff <= export_mod.MAX_DIFF * largest
    # the tolerance still scales with MAX_DIFF: at 1e-12 of the largest output the rounding is refused
    monkeypatch.setattr(export_mod, "MAX_DIFF", 1e-12)
    with pytest.raises(StudioError, match=r"differ from PyTorch.*× the largest output"):
        export_onnx(model, x[:1], tmp_path / "big2.onnx", verify_batch=x)
    assert not (tmp_path / "big2.onnx").exists()


def test_output_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "MAX_DIFF", 0.0)  # any rounding difference now fails
    model = _pruned_cnn()
    with pytest.raises(StudioError, match="differ from PyTorch"):
        export_onnx(model, torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", verify_batch=torch.randn(64, 3, 16, 16))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("stage", ["verify", "accuracy in onnxruntime"])
def test_cancel_during_verification_leaves_nothing(tmp_path, stage):
    token = CancelToken()

    def cancel_at_stage(p):
        if p.stage == stage:
            token.cancel()

    with pytest.raises(Cancelled):
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", evaluation=_labelled(600),
                    progress=cancel_at_stage, cancel=token)
    assert os.listdir(tmp_path) == []


def test_destination_problems_are_studio_errors(tmp_path):
    missing = tmp_path / "no such folder" / "m.onnx"
    with pytest.raises(StudioError) as err:
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), missing)
    text = str(err.value)
    assert str(missing.parent) in text and "does not exist" in text and "What to do" in text
    assert not missing.parent.exists()

    with pytest.raises(StudioError, match="folder, not a file"):
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), tmp_path)


def test_models_over_two_gigabytes_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "_PROTOBUF_LIMIT", 1000)  # bytes; the small CNN has more
    with pytest.raises(StudioError, match="2 GiB"):
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_opset_can_be_chosen(tmp_path):
    report = export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", opset=17)
    assert report.opset == 17
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 17


@pytest.mark.slow
def test_fallback_to_the_torch_export_exporter(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("simulated TorchScript exporter failure")

    monkeypatch.setattr(export_mod, "_export_torchscript", refuse)
    model = _pruned_cnn()
    report = export_onnx(model, torch.randn(2, 3, 16, 16), tmp_path / "m.onnx", verify_batch=torch.randn(5, 3, 16, 16))
    assert report.exporter == "dynamo"
    assert report.max_abs_diff < 1e-4
    assert report.zero_fractions["fc.weight"] == (0.5, 0.5)
    assert report.zero_fractions["conv.weight"] == (3 / 8, 3 / 8)  # BatchNorm folded, zeros kept
    assert os.listdir(tmp_path) == ["m.onnx"]

    # sparse storage and scoring work on that exporter's graph too (its initializers are named
    # and laid out its own way): the Linear, all zeros but one, goes sparse (one value, one
    # position), and the file scores as PyTorch does
    with torch.no_grad():
        model.fc.weight[:, 1::2] = 0.0
        model.fc.weight[0, 1] = 0.5
    images = _labelled()
    stored = export_onnx(model, torch.randn(2, 3, 16, 16), tmp_path / "s.onnx", sparse=True, evaluation=images)
    assert stored.exporter == "dynamo" and stored.sparse_tensors >= 1 and stored.scored_differently == 0
    assert stored.zero_fractions["fc.weight"][1] == 1 - 1 / model.fc.weight.numel()


def test_model_that_cannot_be_exported(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("simulated exporter failure")

    monkeypatch.setattr(export_mod, "_export_torchscript", refuse)
    monkeypatch.setattr(export_mod, "_export_dynamo", refuse)
    with pytest.raises(StudioError, match="could not be converted to ONNX"):
        export_onnx(_pruned_cnn(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# the literature's checkpoints in ../shared


def _shared_model(shared: Path, name: str, arch: str):
    from core.model_io import load_model

    return load_model(shared / "models" / name, arch=arch)


@pytest.mark.shared
@pytest.mark.parametrize(("file", "arch", "data", "n_weights"), [
    ("resnet20_cifar10.pt", "resnet20", "cifar10", 22),
    ("mlpnet_mnist.pt", "mlpnet", "mnist", 3),
])
def test_shared_checkpoints_export_exactly(tmp_path, shared_dir, file, arch, data, n_weights):
    from core.data import load_evaluation

    loaded = _shared_model(shared_dir, file, arch)
    images = load_evaluation(str(shared_dir / "data" / data), preset=loaded.preset, max_evaluation=64)
    report = export_onnx(loaded.model, images.x[:2], tmp_path / f"{arch}.onnx", verify_batch=images.x)
    assert report.max_abs_diff < 1e-4
    assert len(report.zero_fractions) == n_weights
    assert all(t == o for t, o in report.zero_fractions.values())

    with torch.no_grad():
        expected = loaded.model(images.x).argmax(1).numpy()
    assert (_onnx_run(tmp_path / f"{arch}.onnx", images.x).argmax(1) == expected).all()


@pytest.mark.shared
def test_pruned_resnet20_keeps_its_zeros_and_compresses(tmp_path, shared_dir):
    loaded = _shared_model(shared_dir, "resnet20_cifar10.pt", "resnet20")
    pruned = _copy_with_zeros(loaded.model, 0.7)
    sample = torch.randn(2, 3, 32, 32)
    dense = export_onnx(loaded.model, sample, tmp_path / "dense.onnx")
    sparse = export_onnx(pruned, sample, tmp_path / "sparse.onnx", verify_batch=torch.randn(8, 3, 32, 32))
    assert sparse.max_abs_diff < 1e-4
    conv = sparse.zero_fractions["layer2.0.conv1.weight"]
    assert conv[0] == conv[1] == pytest.approx(0.7, abs=1e-3)
    assert sparse.onnx_bytes == dense.onnx_bytes
    assert sparse.compressed_bytes < 0.6 * dense.compressed_bytes

    # sparse storage: the 22 conv and fc weights (30% nonzero: 3.6 bytes a weight instead of 4)
    # go sparse, the biases and BatchNorm tensors stay dense; the same outputs in onnxruntime
    stored = export_onnx(pruned, sample, tmp_path / "stored.onnx", sparse=True)
    assert stored.sparse_tensors == 22 and stored.onnx_bytes < 0.95 * sparse.onnx_bytes
    x = torch.randn(4, 3, 32, 32)
    np.testing.assert_array_equal(_onnx_run(tmp_path / "stored.onnx", x), _onnx_run(tmp_path / "sparse.onnx", x))



@pytest.mark.parametrize("sparse", [False, True])
def test_float16_weights_halve_the_file_and_compute_in_float32(tmp_path, sparse):
    """export_onnx(float16=True): each weight matrix is a float16 initializer read through a Cast
    to float32 under its own name; biases and BatchNorm stay float32. The file is about half the
    dense one, every zero survives and no nonzero becomes one (a weight below float16's smallest
    magnitude is stored as that), onnxruntime matches PyTorch with its weights rounded to float16,
    and the preview's sizes are the written file's."""
    model = _pruned_cnn()
    with torch.no_grad():
        model.fc.weight[1, 1] = 1e-9  # rounds to 0 in float16
        model.fc.weight[1, 3] = -1e-9
    sample, x = torch.randn(1, 3, 16, 16), torch.randn(6, 3, 16, 16)
    plain = export_onnx(model, sample, tmp_path / "plain.onnx", sparse=sparse)
    half = export_onnx(model, sample, tmp_path / "half.onnx", verify_batch=x, sparse=sparse, float16=True)
    assert half.float16 and half.float16_tensors == 2 and not plain.float16 and plain.float16_tensors == 0
    assert half.onnx_bytes == (tmp_path / "half.onnx").stat().st_size
    halved = 2 * (model.conv.weight.numel() + model.fc.weight.numel())  # bytes the float16 halves save
    assert 0.9 * halved < plain.onnx_bytes - half.onnx_bytes <= halved  # less the two Casts' bytes
    assert half.zero_fractions == plain.zero_fractions
    assert half.interface.endswith("`output`; float16 weights") and "float32" in export_mod.describe_storage(half)

    proto = onnx.load(str(tmp_path / "half.onnx"))
    onnx.checker.check_model(proto)
    stored = {t.name: t for t in proto.graph.initializer}
    stored.update({t.values.name: t.values for t in proto.graph.sparse_initializer})
    halves = {n for n, t in stored.items() if t.data_type == onnx.TensorProto.FLOAT16}
    assert halves == {"conv.weight__float16", "fc.weight__float16"}
    assert stored["fc.bias"].data_type == stored["bn.running_var"].data_type == onnx.TensorProto.FLOAT
    casts = {n.input[0]: n.output[0] for n in proto.graph.node if n.op_type == "Cast"}
    assert casts == {"conv.weight__float16": "conv.weight", "fc.weight__float16": "fc.weight"}
    fc = export_mod._onnx_tensors((tmp_path / "half.onnx").read_bytes())["fc.weight"]
    assert fc.dtype == np.float16 and fc[1, 1] == np.float16(2.0 ** -24) and fc[1, 3] == -np.float16(2.0 ** -24)

    rounded = _copy_with_zeros(model, 0.0)
    with torch.no_grad():
        for m in (rounded.conv, rounded.fc):
            m.weight.copy_(torch.from_numpy(export_mod._onnx_tensors((tmp_path / "half.onnx").read_bytes())
                                            [("conv" if m is rounded.conv else "fc") + ".weight"]
                                            .astype(np.float32)))
        np.testing.assert_allclose(_onnx_run(tmp_path / "half.onnx", x), rounded(x).numpy(), atol=1e-5)
        assert np.abs(_onnx_run(tmp_path / "half.onnx", x) - model(x).numpy()).max() > 1e-6  # it did round
    sizes = onnx_sizes(model, sample, float16=True)
    assert sizes.onnx_bytes < onnx_sizes(model, sample).onnx_bytes
    written = (sizes.sparse_bytes, sizes.sparse_compressed_bytes) if sparse else (sizes.onnx_bytes, sizes.compressed_bytes)
    assert written == (half.onnx_bytes, half.compressed_bytes)


def test_float16_weights_refuse_a_weight_beyond_float16(tmp_path):
    """A weight over 65504 would become infinite: refused by name, nothing written."""
    model = _pruned_cnn()
    with torch.no_grad():
        model.fc.weight[0, 0] = 1e5
    with pytest.raises(StudioError, match="'fc.weight' holds 1e\\+05, beyond float16") as err:
        export_onnx(model, torch.randn(1, 3, 16, 16), tmp_path / "half.onnx", float16=True)
    assert err.value.field == "float16" and "float32 weights" in err.value.fix
    assert os.listdir(tmp_path) == []
