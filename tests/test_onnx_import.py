"""Opening ONNX classifiers (core.onnx_import, core.model_io's "onnx" format): the graph gives
onnxruntime's outputs, prunes exactly as the network it was exported from, and exports again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_files import anonymous
from torch import nn

from core.data import load_bundle
from core.demo import load_demo
from core.errors import StudioError
from core.evaluate import evaluate
from core.export import export_onnx
from core.model_io import load_model
from core.onnx_import import OnnxGraphModule, onnx_to_torch
from core.pruning import PruneRequest, apply_result, prune


def _ort(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, **kwargs) -> Path:
    export_onnx(model, torch.randn(2, *shape), path, **kwargs)
    return path


def test_an_exported_demo_comes_back_as_its_own_architecture(tmp_path):
    demo = load_demo("digits_cnn")
    path = _export(demo.model, (1, 8, 8), tmp_path / "digits_cnn.onnx")
    loaded = load_model(path)
    assert loaded.format == "onnx" and loaded.arch == "digits_cnn" and loaded.input_shape == (1, 8, 8)
    assert type(loaded.model) is type(demo.model) and loaded.preset == demo.preset
    for key, value in demo.model.state_dict().items():
        if not key.endswith("num_batches_tracked"):  # not part of an ONNX graph
            assert torch.equal(loaded.model.state_dict()[key], value), key


@pytest.mark.parametrize("demo_name", ["digits_cnn", "digits_mlp"])
def test_a_graph_of_unknown_weights_runs_and_prunes_as_the_original(tmp_path, demo_name):
    """Weights renamed so that no architecture matches: the graph itself is run. It gives
    onnxruntime's outputs, and CHITA, WoodFisher and magnitude prune it to the same accuracy
    and λ as the network it came from (same gradients, same BatchNorm handling)."""
    demo = load_demo(demo_name)
    path = anonymous(_export(demo.model, (1, 8, 8), tmp_path / "m.onnx"), tmp_path / "anon.onnx")
    loaded = load_model(path)
    assert isinstance(loaded.model, OnnxGraphModule) and loaded.arch is None
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 10
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(x).numpy(), _ort(path, x), atol=1e-5)
    bundle = load_bundle("digits")
    for method in ("magnitude", "chita", "woodfisher"):
        request = PruneRequest(method=method, sparsity=0.8, samples=128)
        got = prune(loaded.model, bundle.calibration, request)
        want = prune(demo.model, bundle.calibration, request)
        assert got.nonzeros == want.nonzeros and got.lam == want.lam, method
        assert evaluate(apply_result(loaded.model, got), bundle.evaluation).accuracy == \
            evaluate(apply_result(demo.model, want), bundle.evaluation).accuracy, method
    # the pruned graph exports again, verified and scored in onnxruntime
    report = export_onnx(apply_result(loaded.model, got), x[:2], tmp_path / "again.onnx", verify_batch=x,
                         evaluation=bundle.evaluation, sparse=True)
    assert report.scored_differently == 0 and all(a == b for a, b in report.zero_fractions.values())


def test_a_pruned_graph_keeps_the_files_input_and_output_names_metadata_and_opset(tmp_path):
    """Code that feeds the source file by name, and reads its metadata (class names, as some
    deployment tools store them), takes the pruned file unchanged, and it is written at the
    source's opset unless another is asked for; sizes count the same file."""
    from onnx_files import renamed_io

    from core.export import onnx_sizes

    demo = load_demo("digits_cnn")
    src = anonymous(_export(demo.model, (1, 8, 8), tmp_path / "m.onnx", opset=11), tmp_path / "anon.onnx")
    meta = {"names": "{0: 'zero', 1: 'one'}", "author": "someone"}
    path = renamed_io(src, tmp_path / "named.onnx", "serving_default_input_1:0", "StatefulPartitionedCall:0", meta)
    loaded = load_model(path)
    assert isinstance(loaded.model, OnnxGraphModule) and loaded.model.metadata_props == meta
    bundle = load_bundle("digits")
    result = prune(loaded.model, bundle.calibration, PruneRequest(method="magnitude", sparsity=0.5))
    pruned = apply_result(loaded.model, result)
    x = bundle.evaluation.x[:4]
    report = export_onnx(pruned, x[:2], tmp_path / "pruned.onnx", verify_batch=x)
    proto = onnx.load(str(tmp_path / "pruned.onnx"))
    assert [i.name for i in proto.graph.input] == ["serving_default_input_1:0"]
    assert [o.name for o in proto.graph.output] == ["StatefulPartitionedCall:0"]
    assert {p.key: p.value for p in proto.metadata_props} == meta
    session = ort.InferenceSession(str(tmp_path / "pruned.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["StatefulPartitionedCall:0"], {"serving_default_input_1:0": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, pruned(x).numpy(), atol=1e-5)
    assert onnx_sizes(pruned, x[:2]).onnx_bytes == report.onnx_bytes
    assert loaded.model.source_opset == 11 and report.opset == 11
    assert export_onnx(pruned, x[:2], tmp_path / "17.onnx", opset=17).opset == 17
    # a network of the app's own keeps the app's names, and no metadata
    plain = export_onnx(demo.model, x[:2], tmp_path / "demo.onnx")
    proto = onnx.load(plain.path)
    assert (proto.graph.input[0].name, proto.graph.output[0].name) == ("input", "output") and not proto.metadata_props
    assert plain.opset > 11  # the exporter's default


def test_a_graph_with_several_outputs_prunes_on_the_first_and_exports_them_all(tmp_path):
    """A file that returns logits and probabilities: the engine scores the first, and the pruned
    file returns both, by their names, each verified against PyTorch."""
    import warnings

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 10)

        def forward(self, x):
            z = self.fc2(torch.relu(self.fc1(x.flatten(1))))
            return z, torch.softmax(z, dim=1)

    torch.manual_seed(0)
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Two().eval(), (torch.randn(2, 1, 8, 8),), str(path), input_names=["x"],
                          output_names=["logits", "probs"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    loaded = load_model(path)
    graph = loaded.model
    assert isinstance(graph, OnnxGraphModule) and graph.extra_outputs == ("probs",) and loaded.num_classes == 10
    x = load_bundle("digits").evaluation.x[:6]
    with torch.no_grad():
        assert graph(x).shape == (6, 10)  # the engine sees the class scores only
    result = prune(graph, load_bundle("digits").calibration, PruneRequest(method="chita", sparsity=0.5, samples=64))
    pruned = apply_result(graph, result)
    report = export_onnx(pruned, x[:2], tmp_path / "out.onnx", verify_batch=x)
    assert report.max_abs_diff < 1e-5 and pruned.all_outputs is False  # only the export's copy returned both
    session = ort.InferenceSession(str(tmp_path / "out.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probs"]
    logits, probs = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, pruned(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(probs, torch.softmax(pruned(x), 1).numpy(), atol=1e-6)


class _Upsampling(nn.Module):
    """Doubles the image's size (Resize, bilinear), a strided conv, a Linear; with ``labels`` it
    returns the class labels (ArgMax) beside the scores."""

    def __init__(self, labels: bool) -> None:
        super().__init__()
        self.labels = labels
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        import torch.nn.functional as F

        h = torch.relu(self.conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)))
        z = self.fc(h.flatten(1))
        return (z, z.argmax(1)) if self.labels else z


def test_a_graph_that_resizes_its_input_and_returns_labels_prunes_and_exports(tmp_path):
    """A network that upsamples its input (Resize) and returns class labels beside its scores
    (ArgMax): the graph gives onnxruntime's outputs, its gradient rows are the original's (closed
    form), and the pruned file resizes and labels as its source did."""
    import warnings

    from core.fisher import per_sample_gradients
    from core.prunable import prunable_parameters

    torch.manual_seed(0)
    net = _Upsampling(labels=True).eval()
    path = tmp_path / "up.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, 1, 8, 8),), str(path), input_names=["x"], dynamo=False,
                          output_names=["scores", "label"], dynamic_axes={"x": {0: "n"}}, opset_version=13)
    assert {"Resize", "ArgMax"} <= {n.op_type for n in onnx.load(str(path)).graph.node}
    graph = load_model(path).model
    assert isinstance(graph, OnnxGraphModule) and graph.extra_outputs == ("label",)
    bundle = load_bundle("digits")
    x = bundle.evaluation.x[:8]
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(path, x), atol=1e-5)
    names = prunable_parameters(graph, preset="all")
    y = bundle.evaluation.y[:8]
    got = per_sample_gradients(graph, x, y, names).G
    want = per_sample_gradients(net, x, y, prunable_parameters(net, preset="all")).G
    assert torch.allclose(got, want, atol=1e-5)
    pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="chita", sparsity=0.5,
                                                                                samples=64)))
    report = export_onnx(pruned, x[:2], tmp_path / "out.onnx", verify_batch=x, evaluation=bundle.evaluation)
    assert report.scored_differently == 0 and report.opset == 13
    session = ort.InferenceSession(str(tmp_path / "out.onnx"), providers=["CPUExecutionProvider"])
    scores, label = session.run(["scores", "label"], {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(scores, pruned(x).numpy(), atol=1e-5)
    np.testing.assert_array_equal(label, scores.argmax(1))


def test_layers_under_one_container_get_their_own_names_and_the_files_interface_decides_the_architecture(tmp_path):
    """Weights all under the same containers (tf2onnx's StatefulPartitionedCall/sequential_1/…, a
    wrapper's model.) give layers the network's own names; such a file with the app's interface
    is recognised as its architecture, while one with its own input and output names runs as the
    graph (so that its export keeps them) unless the architecture is asked for."""
    from onnx_files import renamed_io

    demo = load_demo("digits_cnn")
    src = _export(demo.model, (1, 8, 8), tmp_path / "m.onnx")
    proto = onnx.load(str(src))
    names = {t.name: f"wrapper.net.{t.name}" for t in proto.graph.initializer if "." in t.name}
    for t in proto.graph.initializer:
        t.name = names.get(t.name, t.name)
    for node in proto.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
    onnx.save(proto, str(tmp_path / "wrapped.onnx"))
    graph, _, _ = onnx_to_torch(tmp_path / "wrapped.onnx")
    own = {n for n, _ in demo.model.named_parameters()}
    assert {n for n, _ in graph.named_parameters()} == own
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(tmp_path / "wrapped.onnx", x), atol=1e-5)
    assert load_model(tmp_path / "wrapped.onnx").arch == "digits_cnn"
    named = renamed_io(tmp_path / "wrapped.onnx", tmp_path / "named.onnx", "images", "logits")
    loaded = load_model(named)
    assert isinstance(loaded.model, OnnxGraphModule) and loaded.arch is None
    assert load_model(named, arch="digits_cnn").arch == "digits_cnn"


def test_open_image_sizes_stay_open_where_the_pruned_graph_runs_at_other_sizes(tmp_path):
    """Exporters such as Hugging Face's leave height and width open. A network with global pooling
    is written with them open again, and the file runs at another size as the pruned graph does;
    one whose Flatten fixes the size is written at the data's size."""
    import warnings

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.fc(h.mean(dim=(2, 3)))

    bundle = load_bundle("digits")
    x = bundle.evaluation.x[:6]
    for name, net, open_after in (("pooled", Pooled().eval(), True), ("cnn", load_demo("digits_cnn").model, False)):
        torch.manual_seed(0)
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.randn(2, 1, 8, 8),), str(path), input_names=["pixel_values"],
                              output_names=["logits"], dynamo=False,
                              dynamic_axes={"pixel_values": {0: "batch_size", 1: "num_channels", 2: "height",
                                                             3: "width"}, "logits": {0: "batch_size"}})
        graph = load_model(path).model
        assert isinstance(graph, OnnxGraphModule) and graph.open_input_dims == (2, 3)
        pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="magnitude", sparsity=0.5)))
        report = export_onnx(pruned, x[:2], tmp_path / f"{name}_out.onnx", verify_batch=x)
        dims = [d.dim_value or d.dim_param for d in
                onnx.load(str(tmp_path / f"{name}_out.onnx")).graph.input[0].type.tensor_type.shape.dim]
        if open_after:
            assert dims == ["batch", 1, "size_2", "size_3"] and "size_2×size_3" in report.interface
            big = torch.randn(3, 1, 13, 11)
            with torch.no_grad():
                np.testing.assert_allclose(_ort(tmp_path / f"{name}_out.onnx", big), pruned(big).numpy(), atol=1e-5)
        else:
            assert dims == ["batch", 1, 8, 8], name


@pytest.mark.parametrize("sparse", [False, True])
def test_a_float16_file_runs_in_float32_and_exports_in_float16(tmp_path, sparse, capsys):
    """A float16 file (weights, input and output) is pruned in float32 and written in float16
    again, verified and scored in onnxruntime; a kept weight too small for float16 stays nonzero,
    so the mask survives the rounding."""
    from onnx_files import float16_copy

    from core.export import OnnxRuntimeModel

    demo = load_demo("digits_cnn")
    path = float16_copy(_export(demo.model, (1, 8, 8), tmp_path / "m.onnx"), tmp_path / "half.onnx")
    loaded = load_model(path)
    graph = loaded.model
    assert isinstance(graph, OnnxGraphModule) and graph.float16_io and loaded.arch is None
    from core.cli import main
    capsys.readouterr()
    assert main(["info", str(path)]) == 0 and "the file is float16" in capsys.readouterr().out
    bundle = load_bundle("digits")
    pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="chita", sparsity=0.7,
                                                                                samples=200)))
    name = next(n for n, _ in pruned.named_parameters() if n.endswith("weight"))
    w = pruned.get_parameter(name)
    with torch.no_grad():
        w.view(-1)[int(torch.nonzero(w.reshape(-1))[0])] = 1e-9  # rounds to 0 in float16
    x = bundle.evaluation.x
    report = export_onnx(pruned, x[:2], tmp_path / "out.onnx", verify_batch=x[:16], evaluation=bundle.evaluation,
                         sparse=sparse)
    assert report.interface.endswith("float16 → `output`") and report.max_abs_diff < 3e-2
    assert all(a == b for a, b in report.zero_fractions.values())
    assert report.scored_differently <= 2 and abs(report.onnx_eval.accuracy - report.reference_eval.accuracy) < 0.01
    session = ort.InferenceSession(str(tmp_path / "out.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float16)"
    with torch.no_grad():
        np.testing.assert_allclose(OnnxRuntimeModel(tmp_path / "out.onnx")(x[:8]).numpy(), pruned(x[:8]).numpy(),
                                   atol=3e-2 * float(pruned(x[:8]).abs().max()))


@pytest.mark.parametrize("sparse", [False, True])
def test_a_mixed_precision_file_exports_with_float16_weights_and_float32_io(tmp_path, sparse, capsys):
    """A mixed-precision file (float32 in and out, float16 weights with Casts inside, as
    onnxconverter-common's keep_io_types writes it) is pruned in float32 and exported so again:
    float32 interface, float16 weights (half the float32 file's size), the mask kept, verified and
    scored in onnxruntime. It was written in float32, twice its source's size."""
    from onnx_files import converted_float16

    from core.cli import main

    demo = load_demo("digits_cnn")
    src = _export(demo.model, (1, 8, 8), tmp_path / "m.onnx")
    path = converted_float16(src, tmp_path / "mixed.onnx", keep_io_types=True)
    loaded = load_model(path)
    graph = loaded.model
    assert isinstance(graph, OnnxGraphModule) and graph.float16_weights and not graph.float16_io
    assert loaded.arch is None  # its own interface, but building digits_cnn would lose the float16 weights
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["float16_weights_file"] and not info["float16_file"]
    bundle = load_bundle("digits")
    pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="chita", sparsity=0.7,
                                                                                samples=200)))
    name = next(n for n, _ in pruned.named_parameters() if n.endswith("weight"))
    with torch.no_grad():
        w = pruned.get_parameter(name)
        w.view(-1)[int(torch.nonzero(w.reshape(-1))[0])] = 1e-9  # rounds to 0 in float16
    x = bundle.evaluation.x
    out = tmp_path / "out.onnx"
    report = export_onnx(pruned, x[:2], out, verify_batch=x[:16], evaluation=bundle.evaluation, sparse=sparse)
    assert report.interface.endswith("`output`; float16 weights") and report.max_abs_diff < 3e-2
    assert all(a == b for a, b in report.zero_fractions.values())
    assert report.onnx_bytes < 0.6 * src.stat().st_size
    assert report.scored_differently <= 2 and abs(report.onnx_eval.accuracy - report.reference_eval.accuracy) < 0.01
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float)"
    proto = onnx.load(str(out))
    weights = [*proto.graph.initializer, *(s.values for s in proto.graph.sparse_initializer)]
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights if len(t.dims) >= 2)
    with torch.no_grad():
        np.testing.assert_allclose(_ort(out, x[:8]), pruned(x[:8]).numpy(),
                                   atol=3e-2 * float(pruned(x[:8]).abs().max()))


@pytest.mark.parametrize("keep_io_types", [False, True])
def test_a_converted_float16_file_that_resizes_prunes_and_exports_in_float16(tmp_path, keep_io_types):
    """A network that upsamples (Resize), as onnxruntime's float16 converter writes it: float16
    throughout, or mixed precision with its input Casts listed after the nodes that read them.
    Resize's scales stay float32 beside float16 data. It opens, prunes, and exports in float16
    with its interface, verified in onnxruntime."""
    import warnings

    from onnx_files import converted_float16

    torch.manual_seed(0)
    src = tmp_path / "up.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Upsampling(labels=False).eval(), (torch.randn(2, 1, 8, 8),), str(src), input_names=["x"],
                          output_names=["scores"], dynamic_axes={"x": {0: "n"}}, opset_version=13, dynamo=False)
    path = converted_float16(src, tmp_path / "half.onnx", keep_io_types=keep_io_types)
    graph = load_model(path).model
    assert graph.float16_weights and graph.float16_io is not keep_io_types
    bundle = load_bundle("digits")
    pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="magnitude", sparsity=0.5)))
    x = bundle.evaluation.x
    out = tmp_path / "out.onnx"
    report = export_onnx(pruned, x[:2], out, verify_batch=x[:16])
    assert all(a == b for a, b in report.zero_fractions.values())
    proto = onnx.load(str(out))
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer if len(t.dims) >= 2)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    dtype = np.float32 if keep_io_types else np.float16
    got = session.run(None, {"x": x[:8].numpy().astype(dtype)})[0].astype(np.float32)
    with torch.no_grad():
        want = pruned(x[:8]).numpy()
    np.testing.assert_allclose(got, want, atol=3e-2 * float(np.abs(want).max()))


class _FlattenByView(nn.Module):
    """A conv and a Linear on ``view(n, -1)``: exported with a fixed batch, the view becomes a
    Reshape to the constant [1, 512]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


class _ClassToken(nn.Module):
    """Rows of the image as tokens with a class token expanded to the batch (as ViT does), then
    a mean and a Linear: exported with a fixed batch, the expand is to a constant shape."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        t = self.proj(x.flatten(1, 2))
        return self.head(torch.cat([self.cls.expand(t.size(0), -1, -1), t], 1).mean(1))


@pytest.mark.parametrize("net_class", [_FlattenByView, _ClassToken])
def test_a_file_exported_for_one_image_at_a_time_runs_prunes_and_exports_on_any_batch(tmp_path, net_class, capsys):
    """torch.onnx.export without dynamic axes fixes the batch at 1 and folds it into constant
    shapes (a Reshape to [1, 512], an Expand of the class token). The graph runs on any batch with
    each image's outputs as onnxruntime gives them one at a time, gives the original's gradient
    rows, prunes, and exports with an open batch; onnxruntime scores the source file one image at a
    time. It ran the whole batch as one image (mat1 and mat2 shapes cannot be multiplied)."""
    import warnings

    from core.export import OnnxRuntimeModel, evaluate_onnx
    from core.fisher import per_sample_gradients
    from core.prunable import prunable_parameters

    torch.manual_seed(0)
    net = net_class().eval()
    src = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 1, 8, 8),), str(src), input_names=["x"], output_names=["y"],
                          dynamo=False)
    assert onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    graph = load_model(anonymous(src, tmp_path / "anon.onnx")).model
    assert isinstance(graph, OnnxGraphModule) and graph.fixed_batch == 1
    from core.cli import main
    assert main(["info", str(src), "--json", "-q"]) == 0 and json.loads(capsys.readouterr().out)["fixed_batch"] == 1
    bundle = load_bundle("digits")
    x, y = bundle.evaluation.x[:6], bundle.evaluation.y[:6]
    one_at_a_time = np.concatenate([_ort(src, x[i:i + 1]) for i in range(6)])
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), one_at_a_time, atol=1e-5)
        np.testing.assert_allclose(OnnxRuntimeModel(src)(x).numpy(), one_at_a_time, atol=1e-6)
    names = prunable_parameters(graph, preset="all")
    got = per_sample_gradients(graph, x, y, names).G
    want = per_sample_gradients(net, x, y, prunable_parameters(net, preset="all")).G
    assert torch.allclose(got, want, atol=1e-5)
    assert evaluate_onnx(src, bundle.evaluation).accuracy == evaluate(graph, bundle.evaluation).accuracy
    pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="chita", sparsity=0.5,
                                                                                samples=64)))
    out = tmp_path / "out.onnx"
    report = export_onnx(pruned, x[:1], out, verify_batch=x, evaluation=bundle.evaluation)
    assert report.interface.startswith("input `x` batch×1×8×8") and report.scored_differently == 0
    with torch.no_grad():
        np.testing.assert_allclose(_ort(out, x), pruned(x).numpy(), atol=1e-5)


def test_a_file_whose_fixed_batch_cannot_be_opened_says_how_to_export_it(tmp_path):
    """A fixed-batch graph whose batch sits where the importer cannot see it (here a Reshape that
    turns the 4 features of the one image into 4 rows) is refused at open with the re-export it
    needs, not with an error deep inside a later run."""
    w = numpy_helper.from_array(np.ones((1, 3), np.float32), "W")
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["t"]), helper.make_node("MatMul", ["t", "W"], ["u"]),
             helper.make_node("Reshape", ["u", "flat"], ["y"])]
    consts = [numpy_helper.from_array(np.array([4, 1], np.int64), "rows"),
              numpy_helper.from_array(np.array([1, 12], np.int64), "flat"), w]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12])], consts)
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(StudioError, match="exported for a batch of exactly 1 image and does not run") as err:
        load_model(path)
    assert err.value.field == "graph.input" and "dynamic_axes={'x': {0: 'batch'}}" in err.value.fix


def test_a_range_up_to_the_batch_as_torchs_dynamo_exporter_writes_it_stays_open_on_export(tmp_path):
    """The dynamo exporter reads the batch with Shape(x, start=0, end=1) and indexes with a Range
    up to it: the graph runs on any batch, and its pruned export (traced on 2 images) runs on 5.
    Shape ignored start and end, and Range wrote the tracing batch into the file as a constant."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "W")
    consts = [numpy_helper.from_array(np.array(v, np.int64), name) for v, name in ((0, "zero"), (1, "one"))]
    nodes = [helper.make_node("Shape", ["x"], ["s"], start=0, end=1), helper.make_node("Squeeze", ["s"], ["n"]),
             helper.make_node("Range", ["zero", "n", "one"], ["r"]),
             helper.make_node("Gather", ["x", "r"], ["g"], axis=0), helper.make_node("MatMul", ["g", "W"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w, *consts])
    path = tmp_path / "range.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    module = load_model(path).model
    x = torch.randn(5, 4)
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), _ort(path, x), atol=1e-6)
    out = tmp_path / "out.onnx"
    export_onnx(module, x[:2], out, verify_batch=x)
    with torch.no_grad():
        np.testing.assert_allclose(_ort(out, x), module(x).numpy(), atol=1e-6)


def test_nodes_out_of_order_run_and_graphs_with_a_cycle_or_a_missing_name_are_refused(tmp_path):
    """Nodes listed before the nodes they read from (onnxruntime runs such files) run in an order
    that works; a node reading a name nothing gives, or nodes reading each other in a cycle, are
    refused by name. The first failed with a bare KeyError, the second opened and failed later."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32), "W")
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])

    def save(nodes: list, name: str) -> Path:
        path = tmp_path / name
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x_info], [y_info], [w])), str(path))
        return path

    gemm, relu = helper.make_node("Gemm", ["x", "W"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])
    graph = load_model(save([relu, gemm], "late.onnx")).model
    x = torch.randn(3, 4)
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(tmp_path / "late.onnx", x), atol=1e-6)
    ghost = helper.make_node("Add", ["h", "bias"], ["y"])
    with pytest.raises(StudioError, match="reads 'bias', which no node") as err:
        load_model(save([gemm, ghost], "ghost.onnx"))
    assert err.value.field == "graph.node"
    loop = [helper.make_node("Gemm", ["z", "W"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"]),
            helper.make_node("Add", ["x", "y"], ["z"])]
    with pytest.raises(StudioError, match="in a cycle"):
        load_model(save(loop, "loop.onnx"))


def test_a_graph_that_ends_in_softmax_gets_the_losses_of_its_logits(tmp_path):
    """Deployment exports often end in Softmax. The imported graph still returns probabilities
    (the file's contract), but the engine's cross-entropy takes their log as logits: the
    per-sample gradients and the losses equal those of the network without the Softmax."""
    from core.fisher import per_sample_gradients
    from core.prunable import prunable_parameters

    demo = load_demo("digits_cnn")
    with_softmax = nn.Sequential(demo.model, nn.Softmax(dim=1)).eval()
    path = anonymous(_export(with_softmax, (1, 8, 8), tmp_path / "p.onnx"), tmp_path / "pa.onnx")
    loaded = load_model(path)
    assert loaded.model.outputs_probabilities and loaded.arch is None
    bundle = load_bundle("digits")
    x, y = bundle.calibration.x[:64], bundle.calibration.y[:64]
    with torch.no_grad():
        assert torch.allclose(loaded.model(x).sum(1), torch.ones(64), atol=1e-5)  # still probabilities
    got = per_sample_gradients(loaded.model, x, y, prunable_parameters(loaded.model, preset="all"))
    want = per_sample_gradients(demo.model, x, y, prunable_parameters(demo.model, preset="all"))
    # equal up to float32 rounding of log(softmax): 3e-6 of G's norm here, one entry 1.4e-6 off
    # on one VM's kernels; a wrong treatment of the Softmax moves G by its own size
    assert (got.G - want.G).norm() <= 1e-4 * want.G.norm()
    assert torch.allclose(got.G, want.G, rtol=1e-3, atol=1e-5) and got.loss == pytest.approx(want.loss, rel=1e-5)
    a, b = evaluate(loaded.model, bundle.evaluation), evaluate(demo.model, bundle.evaluation)
    assert a.accuracy == b.accuracy and a.loss == pytest.approx(b.loss, rel=1e-5)
    # an exported logits graph is not flagged
    assert not load_model(anonymous(_export(demo.model, (1, 8, 8), tmp_path / "l.onnx"),
                                     tmp_path / "la.onnx")).model.outputs_probabilities


def test_made_up_weight_names_give_way_to_the_node_names_module_path(tmp_path):
    """torch.onnx.export's defaults fold BatchNorm into the convs and name the folded weights
    'onnx::Conv_12'; the layers then take the module path in their node's name
    ('/conv1/Conv' → conv1), and the graph still gives onnxruntime's outputs."""
    import warnings

    demo = load_demo("digits_cnn")
    path = tmp_path / "folded.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(demo.model, (torch.randn(2, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    stored = [t.name for t in onnx.load(str(path)).graph.initializer]
    assert any(n.startswith("onnx::") for n in stored)  # folded: the exporter's own names
    graph, _, _ = onnx_to_torch(path)
    names = {n for n, _ in graph.named_parameters()}
    assert {"conv1.weight", "conv1.bias", "conv2.weight", "fc.weight"} <= names
    assert not any("onnx" in n for n in names)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(path, x), atol=1e-5)


def test_sparse_storage_files_open_with_their_weights(tmp_path):
    demo = load_demo("digits_mlp")
    bundle = load_bundle("digits")
    result = prune(demo.model, bundle.calibration, PruneRequest(method="magnitude", sparsity=0.9))
    pruned = apply_result(demo.model, result)
    path = _export(pruned, (1, 8, 8), tmp_path / "sparse.onnx", sparse=True)
    assert onnx.load(str(path)).graph.sparse_initializer
    loaded = load_model(path)
    assert loaded.arch == "digits_mlp"
    for key, value in pruned.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.model.state_dict()[key], value), key


def test_shape_arithmetic_and_a_re_export_keep_the_batch_open(tmp_path):
    """x.view(x.size(0), -1) exports as Shape, Gather, Unsqueeze, Concat and Reshape; the graph
    runs them, and exporting the imported graph again still takes any batch size."""

    class ViewNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.head = nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return torch.softmax(self.head(h.view(h.size(0), -1)), dim=1)

    torch.manual_seed(0)
    path = anonymous(_export(ViewNet().eval(), (3, 8, 8), tmp_path / "v.onnx"), tmp_path / "va.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Gather", "Reshape", "Softmax"} <= ops
    graph, shape, classes = onnx_to_torch(path)
    assert shape == (3, 8, 8) and classes == 5
    for n in (1, 6):
        x = torch.randn(n, 3, 8, 8)
        with torch.no_grad():
            np.testing.assert_allclose(graph(x).numpy(), _ort(path, x), atol=1e-6)
    report = export_onnx(graph, torch.randn(2, 3, 8, 8), tmp_path / "again.onnx", verify_batch=torch.randn(9, 3, 8, 8))
    assert report.max_abs_diff < 1e-5


class _ChannelsLastNet(nn.Module):
    """Takes N×H×W×C images and turns them channels first itself, as tf2onnx's Keras convnets do:
    with a Transpose, after a rescaling (Mul and Sub, a Keras Rescaling layer), or, grey, with a
    Reshape (the same bytes)."""

    def __init__(self, channels: int, front: str) -> None:
        super().__init__()
        self.front = front
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        if self.front == "reshape":
            x = x.reshape(-1, 1, 8, 8)
        else:
            x = (x * 2.0 - 1.0 if self.front == "rescale" else x).permute(0, 3, 1, 2)
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.max_pool2d(h, 2).flatten(1))


@pytest.mark.parametrize("channels, front", [(3, "transpose"), (3, "rescale"), (1, "reshape")])
def test_a_channels_last_graph_takes_the_apps_images_and_exports_its_own_layout(tmp_path, channels, front):
    """A file that takes N×H×W×C images opens with a channels-first input shape; its module takes
    N×C×H×W batches (the app's data) and gives onnxruntime's outputs on the same images channels
    last; its gradient rows are the original network's; a pruned copy exports as a channels-last
    file again, verified and scored in onnxruntime, and OnnxRuntimeModel takes channels-first
    batches for it."""
    from core.data import ImageSet
    from core.export import OnnxRuntimeModel
    from core.fisher import per_sample_gradients, supports_closed_form
    from core.prunable import prunable_parameters

    torch.manual_seed(0)
    c = channels
    net = _ChannelsLastNet(c, front).eval()
    path = _export(net, (8, 8, c), tmp_path / "nhwc.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ("Transpose" in ops) == (front != "reshape") and ("Mul" in ops) == (front == "rescale")
    loaded = load_model(path)
    graph = loaded.model
    assert isinstance(graph, OnnxGraphModule) and loaded.input_shape == (c, 8, 8)
    assert graph.input_permutation == (0, 2, 3, 1)
    x = torch.randn(6, c, 8, 8)
    x_last = x.permute(0, 2, 3, 1).contiguous()
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(path, x_last), atol=1e-5)
    names = prunable_parameters(graph, preset="all")
    assert names == ["conv.weight", "fc.weight"] and supports_closed_form(graph, names)
    y = torch.randint(0, 5, (6,))
    got = per_sample_gradients(graph, x, y, names).G

    class FirstNet(nn.Module):  # the original network on channels-first images
        def __init__(self) -> None:
            super().__init__()
            self.inner = net

        def forward(self, z):
            return self.inner(z.permute(0, 2, 3, 1))

    want = per_sample_gradients(FirstNet(), x, y, ["inner.conv.weight", "inner.fc.weight"]).G
    assert torch.allclose(got, want, atol=1e-5)

    result = prune(graph, ImageSet(torch.randn(64, c, 8, 8), torch.randint(0, 5, (64,)), "random"),
                   PruneRequest(method="chita", sparsity=0.5, samples=32, recalibrate_bn=False))
    pruned = apply_result(graph, result)
    images = ImageSet(torch.randn(20, c, 8, 8), torch.randint(0, 5, (20,)), "random")
    report = export_onnx(pruned, x[:2], tmp_path / "pruned.onnx", verify_batch=x, evaluation=images)
    assert report.max_abs_diff < 1e-5 and report.onnx_eval.accuracy == report.reference_eval.accuracy
    assert pruned.input_permutation == (0, 2, 3, 1)  # the export permuted its own copy only
    file_input = onnx.load(str(tmp_path / "pruned.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in file_input][1:] == [8, 8, c]
    with torch.no_grad():
        np.testing.assert_allclose(OnnxRuntimeModel(tmp_path / "pruned.onnx")(x).numpy(), pruned(x).numpy(),
                                   atol=1e-5)
        np.testing.assert_allclose(_ort(tmp_path / "pruned.onnx", x_last), pruned(x).numpy(), atol=1e-5)
    again = load_model(tmp_path / "pruned.onnx")
    assert again.input_shape == (c, 8, 8) and again.model.input_permutation == (0, 2, 3, 1)


def test_a_channels_last_input_without_the_graphs_own_transpose_keeps_its_shape(tmp_path):
    """Only a graph that turns its input channels first itself is given channels-first images: one
    that reads N×H×W×C as it is (rescaled, then a Linear over the channels) keeps its H×W×C input
    shape."""

    class PerPixel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 5)

        def forward(self, x):
            return self.fc(x * 2.0).mean(dim=(1, 2))

    graph, shape, _ = onnx_to_torch(_export(PerPixel().eval(), (8, 8, 3), tmp_path / "pixels.onnx"))
    assert shape == (8, 8, 3) and graph.input_permutation is None


def _single_node_model(node: onnx.NodeProto, inits: list[onnx.TensorProto], in_shape: list[int],
                       out_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_graphs_outside_the_closed_form_take_torch_func(tmp_path):
    """A Conv1d network (no closed-form rows) with shape arithmetic: G comes from torch.func's
    vmap over the imported graph, and equals the original network's."""
    from core.fisher import per_sample_gradients, supports_closed_form
    from core.prunable import prunable_parameters

    class Net1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv1d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm1d(4)
            self.fc = nn.Linear(4 * 8, 5)

        def forward(self, x):
            h = torch.relu(self.bn(self.c(x)))
            return self.fc(h.view(h.size(0), -1))

    torch.manual_seed(0)
    model = Net1d().eval()
    loaded = load_model(_export(model, (3, 8), tmp_path / "c1.onnx"))
    graph = loaded.model
    names = prunable_parameters(graph, preset="all")
    assert isinstance(graph, OnnxGraphModule) and names == ["c.weight", "fc.weight"]
    assert not supports_closed_form(graph, names)
    x, y = torch.randn(16, 3, 8), torch.randint(0, 5, (16,))
    got = per_sample_gradients(graph, x, y, names)
    want = per_sample_gradients(model, x, y, prunable_parameters(model, preset="all"))
    assert torch.allclose(got.G, want.G, atol=1e-5)


def test_asymmetric_conv_padding_matches_onnxruntime(tmp_path):
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "k"], ["y"], pads=[0, 1, 2, 0], strides=[1, 2])
    model = _single_node_model(node, [numpy_helper.from_array(w, "k")], ["N", 2, 6, 6], ["N", 4, 6, 3])
    onnx.save(model, str(tmp_path / "pad.onnx"))
    graph, _, _ = onnx_to_torch(tmp_path / "pad.onnx")
    x = torch.randn(3, 2, 6, 6)
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(tmp_path / "pad.onnx", x), atol=1e-5)
    assert [n for n, _ in graph.named_parameters()] == ["k.conv.weight"]


def test_linear_layers_of_every_spelling_and_batchnorm_on_features(tmp_path):
    """Gemm with transB=0 and a broadcast bias, MatMul with a stored right-hand side, and
    BatchNormalization on (N, C) features all become layers and give onnxruntime's outputs."""
    rng = np.random.default_rng(2)

    def arr(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    inits = [numpy_helper.from_array(a, n) for a, n in (
        (arr(6, 5), "gemm_b"), (arr(1, 5), "gemm_c"), (arr(5, 4), "mm_b"), (arr(4), "bn.weight"),
        (arr(4), "bn.bias"), (arr(4), "bn.running_mean"), (np.abs(arr(4)) + 0.5, "bn.running_var"))]
    nodes = [helper.make_node("Gemm", ["x", "gemm_b", "gemm_c"], ["h"], transB=0),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "mm_b"], ["m"]),
             helper.make_node("BatchNormalization", ["m", "bn.weight", "bn.bias", "bn.running_mean",
                                                     "bn.running_var"], ["y"], epsilon=1e-3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "l.onnx"))
    module, shape, classes = onnx_to_torch(tmp_path / "l.onnx")
    assert shape == (6,) and classes == 4
    layers = {n: type(m).__name__ for n, m in module.named_modules() if n and n != "consts"}
    assert layers == {"gemm_b": "Linear", "mm_b": "Linear", "bn": "OnnxBatchNorm"}
    assert module.bn.eps == pytest.approx(1e-3)
    x = torch.randn(5, 6)
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), _ort(tmp_path / "l.onnx", x), atol=1e-5)


def test_evaluation_in_place_never_writes_over_a_view(tmp_path):
    """Without gradients, Relu and Add write into an input that dies with them (as
    nn.ReLU(inplace=True) does), but never into one a Flatten view still shares memory with."""
    rng = np.random.default_rng(1)
    k = numpy_helper.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), "k")
    nodes = [helper.make_node("Conv", ["x", "k"], ["a"]),
             helper.make_node("Flatten", ["a"], ["f"]),  # a view of a, read at the end
             helper.make_node("Relu", ["a"], ["r"]),  # a's last reader
             helper.make_node("Conv", ["r", "k"], ["b"]),
             helper.make_node("Relu", ["b"], ["c"]),  # b is fresh and dies here: in place
             helper.make_node("Add", ["c", "r"], ["d"]),  # c dies here: in place
             helper.make_node("Flatten", ["d"], ["g"]),
             helper.make_node("Add", ["f", "g"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 18])], initializer=[k])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "v.onnx"))
    module, _, _ = onnx_to_torch(tmp_path / "v.onnx")
    assert [s[0] for s, in_place in zip(module.steps, module._in_place) if in_place] == ["Relu", "Add"]
    x = torch.randn(4, 2, 3, 3)
    want = _ort(tmp_path / "v.onnx", x)
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), want, atol=1e-6)
    np.testing.assert_allclose(module(x).detach().numpy(), want, atol=1e-6)  # with gradients: out of place


def test_unsupported_operators_are_refused_by_name(tmp_path):
    node = helper.make_node("Hardmax", ["x"], ["y"], name="mix")
    onnx.save(_single_node_model(node, [], ["N", 4], ["N", 4]), str(tmp_path / "hardmax.onnx"))
    with pytest.raises(StudioError) as err:
        load_model(tmp_path / "hardmax.onnx")
    text = str(err.value)
    assert "Hardmax" in text and "'mix'" in text and str(tmp_path / "hardmax.onnx") in text and "What to do" in text

    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07not really protobuf at all")
    with pytest.raises(StudioError, match="could not be read"):
        load_model(tmp_path / "broken.onnx")


_RNG = np.random.default_rng(0)
_F = _RNG.standard_normal
# (node, its inputs in order): the operators attention, Swin's shifted windows and the torch.export
# exporter's adaptive pooling are made of
_OP_CASES = [
    # Shape's start and end (opset 15; torch's dynamo exporter writes Shape(x, start=0, end=1) for the batch)
    (helper.make_node("Shape", ["x"], ["y"], start=0, end=1), [_F((2, 3, 4)).astype(np.float32)]),
    (helper.make_node("Shape", ["x"], ["y"], start=-2), [_F((2, 3, 4)).astype(np.float32)]),
    (helper.make_node("Shape", ["x"], ["y"], start=1, end=-1), [_F((2, 3, 4, 5)).astype(np.float32)]),
    (helper.make_node("Expand", ["x", "s"], ["y"]),
     [_F((3, 1)).astype(np.float32), np.array([2, 1, 4], np.int64)]),  # both ways: (2, 3, 4)
    (helper.make_node("Range", ["a", "b", "c"], ["y"]), [np.array(7, np.int64), np.array(-2, np.int64),
                                                       np.array(-3, np.int64)]),
    (helper.make_node("Mod", ["x", "d"], ["y"]), [np.array([-7, 7, -3, 5], np.int64), np.array([3, -3, 3, 5], np.int64)]),
    (helper.make_node("Mod", ["x", "d"], ["y"], fmod=1), [_F(6).astype(np.float32), np.float32([0.7])]),
    (helper.make_node("GatherND", ["x", "i"], ["y"]), [_F((3, 4, 2)).astype(np.float32),
                                                     np.array([[[0, 1], [2, -1]], [[1, 0], [-3, 3]]], np.int64)]),
    (helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1), [_F((2, 4, 3)).astype(np.float32),
                                                                   np.array([[[1], [3]], [[0], [2]]], np.int64)]),
    (helper.make_node("ScatterND", ["x", "i", "u"], ["y"]), [_F((4, 3)).astype(np.float32),
                                                           np.array([[2], [0]], np.int64), _F((2, 3)).astype(np.float32)]),
    (helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction="add"),
     [_F((3, 3)).astype(np.float32), np.array([[1, 1], [1, 1], [0, 2]], np.int64), _F(3).astype(np.float32)]),
    (helper.make_node("Einsum", ["a", "b"], ["y"], equation="bhqd,bhkd->bhqk"),
     [_F((2, 3, 4, 5)).astype(np.float32), _F((2, 3, 6, 5)).astype(np.float32)]),
    (helper.make_node("Where", ["c", "a", "b"], ["y"]), [_F((2, 3)) > 0, _F((2, 3)).astype(np.float32),
                                                       _F((1, 3)).astype(np.float32)]),
    (helper.make_node("Equal", ["a", "b"], ["y"]), [np.array([1, 2, 3], np.int64), np.array([1, 0, 3], np.int64)]),
    (helper.make_node("Not", ["a"], ["y"]), [np.array([True, False])]),
    (helper.make_node("ReduceL2", ["x", "a"], ["y"], keepdims=1), [_F((2, 3, 4)).astype(np.float32),
                                                                 np.array([-1], np.int64)]),
    (helper.make_node("Max", ["a", "b", "c"], ["y"]), [_F((2, 3)).astype(np.float32), _F(3).astype(np.float32),
                                                     _F((2, 1)).astype(np.float32)]),
    (helper.make_node("Slice", ["x", "s", "e", "a", "p"], ["y"]),  # backwards, as Swin rolls its windows
     [_F((2, 9)).astype(np.float32), *(np.array([v], np.int64) for v in (-2, -100, 1, -3))]),
    # the ONNX model zoo's classic classifiers and other exporters' spellings
    (helper.make_node("LRN", ["x"], ["y"], size=3, alpha=0.05, beta=0.75, bias=2.0), [_F((2, 5, 3, 3)).astype(np.float32)]),
    (helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3),
     [_F((2, 3, 4, 4)).astype(np.float32), _F(3).astype(np.float32), _F(3).astype(np.float32)]),
    (helper.make_node("Split", ["x", "s"], ["y", "z"], axis=1), [_F((2, 4)).astype(np.float32), np.array([1, 3], np.int64)]),
    (helper.make_node("Split", ["x"], ["y", "z", "w"], axis=1, num_outputs=3), [_F((2, 6)).astype(np.float32)]),
    (helper.make_node("Sum", ["a", "b", "c"], ["y"]), [_F((2, 3)).astype(np.float32), _F(3).astype(np.float32),
                                                     _F((2, 1)).astype(np.float32)]),
    (helper.make_node("Mean", ["a", "b"], ["y"]), [_F((2, 3)).astype(np.float32), _F((2, 3)).astype(np.float32)]),
    (helper.make_node("PRelu", ["x", "s"], ["y"]), [_F((2, 3, 4, 4)).astype(np.float32), _F((3, 1, 1)).astype(np.float32)]),
    (helper.make_node("Round", ["x"], ["y"]), [np.float32([0.5, 1.5, 2.5, -0.5, -1.5, 0.49])]),
    (helper.make_node("Tile", ["x", "r"], ["y"]), [_F((2, 1, 3)).astype(np.float32), np.array([2, 1, 3], np.int64)]),
    (helper.make_node("CumSum", ["x", "a"], ["y"]), [_F((3, 4)).astype(np.float32), np.array(1, np.int64)]),
    (helper.make_node("CumSum", ["x", "a"], ["y"], exclusive=1, reverse=1), [_F((3, 4)).astype(np.float32),
                                                                          np.array(0, np.int64)]),
    (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2), [_F((1, 8, 2, 3)).astype(np.float32)]),
    (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD"), [_F((1, 8, 2, 3)).astype(np.float32)]),
    (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), [_F((1, 2, 4, 6)).astype(np.float32)]),
    (helper.make_node("ReduceProd", ["x", "a"], ["y"], keepdims=0), [_F((2, 3, 4)).astype(np.float32),
                                                                   np.array([0, 2], np.int64)]),
    (helper.make_node("ReduceLogSumExp", ["x", "a"], ["y"]), [_F((2, 3, 4)).astype(np.float32), np.array([1], np.int64)]),
    (helper.make_node("ReduceL1", ["x", "a"], ["y"], keepdims=0), [_F((2, 3)).astype(np.float32), np.array([1], np.int64)]),
    (helper.make_node("ReduceSumSquare", ["x", "a"], ["y"]), [_F((2, 3)).astype(np.float32), np.array([0], np.int64)]),
    (helper.make_node("Size", ["x"], ["y"]), [_F((2, 3, 4)).astype(np.float32)]),
    (helper.make_node("Xor", ["a", "b"], ["y"]), [np.array([True, True, False]), np.array([True, False, False])]),
    (helper.make_node("LessOrEqual", ["a", "b"], ["y"]), [np.float32([1, 2, 3]), np.float32([2, 2, 2])]),
] + [(helper.make_node(op, ["x"], ["y"], **attrs), [np.float32([-2.5, -1.0, -0.2, 0.0, 0.3, 1.0, 2.7])])
     for op, attrs in [("Sign", {}), ("Floor", {}), ("Ceil", {}), ("Sin", {}), ("Cos", {}), ("Softplus", {}),
                       ("Softsign", {}), ("Mish", {}), ("Selu", {}), ("Celu", {"alpha": 0.7}),
                       ("ThresholdedRelu", {"alpha": 0.25})]] + [
    (helper.make_node("Log", ["x"], ["y"]), [np.float32([0.1, 1.0, 7.5])]),
    (helper.make_node("Reciprocal", ["x"], ["y"]), [np.float32([0.1, -1.0, 7.5])]),
    # class labels beside the scores, group normalisation, and resizing (a Keras Resizing layer,
    # a network that upsamples its input), in every coordinate and rounding mode
    (helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0), [_F((3, 5)).astype(np.float32)]),
    (helper.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1),
     [np.float32([[1, 3, 3, 0], [2, 2, 1, 2]])]),
    (helper.make_node("ArgMin", ["x"], ["y"], axis=-1), [np.float32([[1, 0, 3, 0], [2, 2, 1, 1]])]),
    (helper.make_node("TopK", ["x", "k"], ["v", "i"]), [np.float32([[1, 3, 3, 0, 3], [2, 5, 1, 2, 0]]),
                                                      np.array([3], np.int64)]),
    (helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=0, largest=0), [_F((5, 3)).astype(np.float32),
                                                                          np.array([2], np.int64)]),
    (helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect"), [_F((2, 3, 4, 5)).astype(np.float32),
                                                                 np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)]),
    (helper.make_node("Pad", ["x", "p"], ["y"], mode="wrap"), [_F((2, 3, 4, 5)).astype(np.float32),
                                                              np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)]),
    (helper.make_node("Pad", ["x", "p"], ["y"], mode="edge"), [_F((2, 3, 4, 5)).astype(np.float32),
                                                              np.array([0, 0, 0, 3, 0, 0, 2, 0], np.int64)]),
    (helper.make_node("Pad", ["x", "p", "v"], ["y"]), [_F((2, 3, 4)).astype(np.float32),
                                                      np.array([1, 0, 2, 0, 1, 1], np.int64), np.float32(-1.5)]),
    (helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-3),
     [_F((2, 4, 3, 3)).astype(np.float32), _F(2).astype(np.float32), _F(2).astype(np.float32)]),
] + [(helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode=mode, coordinate_transformation_mode=coords,
                       **extra), [_F((2, 3, 5, 4)).astype(np.float32), np.zeros(0, np.float32),
                                  np.float32([1, 1, *factors])])
     for mode, coords, factors, extra in [
         ("nearest", "half_pixel", (2, 2), {}),
         ("nearest", "asymmetric", (2.5, 0.5), {"nearest_mode": "floor"}),
         ("nearest", "align_corners", (1.6, 3), {"nearest_mode": "round_prefer_ceil"}),
         ("nearest", "pytorch_half_pixel", (0.6, 1.5), {"nearest_mode": "ceil"}),
         ("linear", "half_pixel", (2, 2), {}),
         ("linear", "half_pixel", (0.6, 1.75), {}),
         ("linear", "asymmetric", (1.5, 2), {}),
         ("linear", "align_corners", (2, 0.5), {}),
         ("linear", "pytorch_half_pixel", (0.2, 3), {}),
         ("linear", "half_pixel_symmetric", (1.4, 0.75), {}),
     ]] + [
    (helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear"),  # inputs left out: ""
     [_F((1, 2, 6, 6)).astype(np.float32), None, None, np.array([1, 2, 9, 4], np.int64)]),
    (helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", axes=[3, 2]),
     [_F((1, 2, 6, 6)).astype(np.float32), None, None, np.array([4, 9], np.int64)]),
]



def test_a_graph_of_open_input_size_finds_its_batch_layouts_on_the_first_images(tmp_path):
    """Height and width left open in the file: nothing is measured at import (no size to run),
    `info` says so, and the first gradients measure it: the closed form, the original's rows."""
    from core.cli import _gradient_path
    from core.fisher import per_sample_gradients
    from core.prunable import prunable_parameters

    demo = load_demo("digits_cnn")
    path = anonymous(_export(demo.model, (1, 8, 8), tmp_path / "d.onnx"), tmp_path / "anon.onnx")
    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    del proto.graph.value_info[:]
    onnx.save(proto, str(tmp_path / "open.onnx"))
    loaded = load_model(tmp_path / "open.onnx")
    graph = loaded.model
    assert loaded.input_shape == () and graph.batch_layouts is None
    assert _gradient_path(loaded) == "first_images"
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 10, (12,))
    names = prunable_parameters(graph, preset="all")
    got = per_sample_gradients(graph, x, y, names)
    assert graph.batch_layouts == {n.rsplit(".", 1)[0]: ("major",) for n in names}  # measured: images first
    assert _gradient_path(loaded) == "closed_form"
    want = per_sample_gradients(demo.model, x, y, prunable_parameters(demo.model, preset="all"))
    assert torch.allclose(got.G, want.G, atol=1e-6)


def test_an_attentions_projections_get_their_modules_names(tmp_path):
    """nn.MultiheadAttention keeps its input projection as a bare parameter, in_proj_weight: its
    layer is named ``attn.in_proj`` (not ``attn.in_proj_weight``, whose weight would read
    ``attn.in_proj_weight.weight``), beside ``attn.out_proj``."""
    from small_nets import AttentionNet

    torch.manual_seed(0)
    model = AttentionNet().eval()
    graph = load_model(_export(model, (5, 8), tmp_path / "attn.onnx")).model
    names = {n for n, _ in graph.named_parameters() if n.endswith("weight")}
    assert {"attn.in_proj.weight", "attn.out_proj.weight", "head.weight"} <= names
    assert torch.equal(graph.get_parameter("attn.in_proj.weight"), model.attn.in_proj_weight)
    x = torch.randn(4, 5, 8)
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_old_opsets_attribute_forms_run(tmp_path):
    """Files from opset 9 exporters: Slice takes its starts and ends as attributes, Squeeze and
    Unsqueeze their axes, Pad its pads and fill, Clip its bounds; onnxruntime still runs them,
    and so does the importer."""
    nodes = [helper.make_node("Slice", ["x"], ["s"], starts=[1], ends=[-1], axes=[1]),
             helper.make_node("Unsqueeze", ["s"], ["u"], axes=[0]),
             helper.make_node("Squeeze", ["u"], ["q"], axes=[0]),
             helper.make_node("Pad", ["q"], ["p"], pads=[0, 1, 0, 2], value=1.5),  # the fill an attribute too
             helper.make_node("Clip", ["p"], ["y"], min=-0.5, max=1.0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)]), str(tmp_path / "old.onnx"))
    module, shape, _ = onnx_to_torch(tmp_path / "old.onnx")
    x = torch.randn(3, 6)
    with torch.no_grad():
        np.testing.assert_array_equal(module(x).numpy(), _ort(tmp_path / "old.onnx", x))
    assert shape == (6,)


@pytest.mark.parametrize(("node", "inputs"), _OP_CASES, ids=lambda v: getattr(v, "op_type", ""))
def test_operators_give_onnxruntimes_results(node, inputs):
    from core.onnx_import import SUPPORTED_OPS, _attributes

    types = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
             np.dtype(bool): TensorProto.BOOL}
    values = [None if v is None else np.asarray(v) for v in inputs]  # None: an input left out ("")
    given = [(name, v) for name, v in zip(node.input, values) if v is not None]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(name, types[v.dtype], v.shape)
                                            for name, v in given],
                              [helper.make_empty_tensor_value_info(name) for name in node.output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wants = session.run(None, dict(given))
    got = SUPPORTED_OPS[node.op_type](_attributes(node), node)(*(None if v is None else torch.from_numpy(v)
                                                                 for v in values))
    gots = list(got) if len(node.output) > 1 else [got]
    assert len(gots) == len(wants)
    for got, want in zip(gots, wants):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("opset", "mode", "scales"), [(9, "nearest", [1, 1, 2, 3]), (9, "linear", [1, 1, 2, 1.5]),
                                                    (7, "nearest", [1, 1, 2, 2.5]), (7, "linear", [1, 1, 1.5, 2])])
def test_upsample_of_old_opsets_gives_onnxruntimes_results(opset, mode, scales):
    """Upsample, the resizing of opsets 7 to 9 (scales an attribute in 7, an input in 9)."""
    from core.onnx_import import SUPPORTED_OPS, _attributes

    x = _F((2, 3, 4, 5)).astype(np.float32)
    s = np.float32(scales)
    if opset == 9:
        node, inputs = helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode), [x, s]
    else:
        node, inputs = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=scales), [x]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape)
                                            for n, v in zip(node.input, inputs)], [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, dict(zip(node.input, inputs)))[0]
    got = SUPPORTED_OPS["Upsample"](_attributes(node), node)(*(torch.from_numpy(v) for v in inputs))
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def _tiny_transformers():
    from torchvision.models import SwinTransformer, VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=10).eval()
    with torch.no_grad():
        vit.heads.head.weight.normal_(0, 0.2)  # torchvision starts it at zero: every output would be 0
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                           num_classes=10).eval()
    return {"vit": vit, "swin": swin}


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_transformer_graphs_give_the_originals_gradients_prune_and_export_again(tmp_path, name, monkeypatch):
    """A ViT (class token Expand, attention on (tokens, images, features)) and a Swin (windows
    folded into the batch, shifted by backward Slices, masks from Range, Mod, Equal, ScatterND and
    Where) run as graphs. Their projections keep the images elsewhere than first: ViT's input
    projection on dimension 1, its output projection folded in as tokens·images, Swin's layers as
    images·windows (``batch_layouts``). The closed form brings them to the front, and its rows
    equal the original network's from torch.func, layer for layer. Taking every layer for
    images-first instead gives wrong rows, at a batch as long as ViT's 17 tokens. CHITA prunes the
    graph, and the pruned graph exports with its batch still open."""
    from core.cli import _gradient_path
    from core.fisher import per_sample_gradients, supports_closed_form
    from core.prunable import prunable_parameters

    model = _tiny_transformers()[name]
    path = anonymous(_export(model, (3, 32, 32), tmp_path / "t.onnx"), tmp_path / "anon.onnx")
    loaded = load_model(path)
    graph = loaded.model
    assert isinstance(graph, OnnxGraphModule) and _gradient_path(loaded) == "closed_form"  # as `info` says
    x = torch.randn(17, 3, 32, 32)  # 17: ViT's 16 patches and its class token
    y = torch.randint(0, 10, (17,))
    with torch.no_grad():
        np.testing.assert_allclose(graph(x).numpy(), _ort(path, x), rtol=1e-4, atol=1e-5)
    names = prunable_parameters(graph, preset="all")
    layers = {n.rsplit(".", 1)[0] for n in names}
    assert set(graph.batch_layouts) == layers and supports_closed_form(graph, names)
    kinds = {layout[0] for layout in graph.batch_layouts.values()}
    assert kinds == ({"major", "dim", "inner"} if name == "vit" else {"major", "outer"}), graph.batch_layouts
    # the original's parameter behind each of the graph's weights (the same values)
    params = dict(model.named_parameters())
    originals = [next(k for k, v in params.items() if v.shape == w.shape and torch.equal(v, w))
                 for w in (graph.get_parameter(n) for n in names)]
    want = per_sample_gradients(model, x, y, originals, method="func").G
    got = per_sample_gradients(graph, x, y, names).G
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))
    func = per_sample_gradients(graph, x, y, names, method="func").G
    assert torch.allclose(func, want, atol=1e-5 * float(want.abs().max()))
    # another thread exporting sets torch.onnx's export flag for the whole process: this thread's
    # rows must not change (the app measures ONNX sizes in one lane while gradients run in another)
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    monkeypatch.setattr(GLOBALS, "in_onnx_export", True)
    assert torch.onnx.is_in_onnx_export()
    assert torch.equal(per_sample_gradients(graph, x, y, names, method="func").G, func)
    monkeypatch.undo()
    if name == "vit":  # as if every layer saw the images first: the input projections' (17, 17, 32)
        # then passes for (images, tokens, features); the output projections see (tokens·images,
        # features), which sends a chunk to torch.func by itself, so they are left out here
        square = {n for n in names if graph.get_parameter(n).shape[0] == graph.get_parameter(n).shape[1]}
        keep = [i for i, n in enumerate(names) if n not in square]
        subset = [names[i] for i in keep]
        right = per_sample_gradients(model, x, y, [originals[i] for i in keep], method="func").G
        assert torch.allclose(per_sample_gradients(graph, x, y, subset).G, right, atol=1e-5 * float(right.abs().max()))
        measured = graph.batch_layouts
        graph.batch_layouts = {layer: ("major",) for layer in layers}
        wrong = per_sample_gradients(graph, x, y, subset).G
        assert not torch.allclose(wrong, right, atol=1e-2 * float(right.abs().max()))
        graph.batch_layouts = measured

    from core.data import ImageSet

    result = prune(graph, ImageSet(x, y, "random"), PruneRequest(method="chita", sparsity=0.7, samples=17))
    pruned = apply_result(graph, result)
    assert result.nonzeros == round(0.3 * sum(graph.get_parameter(n).numel() for n in names))
    export_onnx(pruned, x[:2], tmp_path / "again.onnx", verify_batch=x[:9])
    # the shape arithmetic traces back to about the graph it came from: one Reshape node each, not
    # a Split, Squeeze, Unsqueeze and Concat per size (ViT: 4 times the nodes before)
    nodes = [len(onnx.load(str(f)).graph.node) for f in (path, tmp_path / "again.onnx")]
    assert nodes[1] <= 1.5 * nodes[0], nodes
    for batch in (1, 5):
        xb = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            np.testing.assert_allclose(_ort(tmp_path / "again.onnx", xb), pruned(xb).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "convnext_tiny"])
def test_torchvision_graphs_match_onnxruntime(tmp_path, name):
    """HardSwish, HardSigmoid and squeeze-excite products (MobileNetV3), LayerNormalization,
    Gelu and MatMul through Transpose (ConvNeXt), run as graphs (weights renamed)."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    path = anonymous(_export(model, (3, 32, 32), tmp_path / "tv.onnx"), tmp_path / "anon.onnx")
    graph, shape, classes = onnx_to_torch(path)
    assert shape == (3, 32, 32) and classes == 10
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        got = graph.eval()(x).numpy()
    want = _ort(path, x)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    linear = [m for m in graph.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(linear) == sum(1 for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


@pytest.mark.shared
@pytest.mark.parametrize(("file", "arch", "data"), [("mlpnet_mnist.pt", "mlpnet", "mnist"),
                                                    ("resnet20_cifar10.pt", "resnet20", "cifar10")])
def test_the_literatures_checkpoints_round_trip(tmp_path, shared_dir, file, arch, data):
    from core.data import load_evaluation

    original = load_model(shared_dir / "models" / file, arch=arch)
    path = _export(original.model, original.input_shape, tmp_path / f"{arch}.onnx")
    loaded = load_model(path)
    assert loaded.format == "onnx" and loaded.arch == arch and loaded.preset == original.preset
    images = load_evaluation(str(shared_dir / "data" / data), preset=original.preset, max_evaluation=500)
    assert evaluate(loaded.model, images).accuracy == evaluate(original.model, images).accuracy


@pytest.mark.parametrize("sparse", [False, True])
def test_a_float16_storage_file_opens_prunes_and_exports_so_again(tmp_path, sparse, capsys):
    """A file written with float16 weights (core.export.float16_storage: float16 initializers
    read through Casts to float32) opens with its weights as parameters, under their own names,
    runs as onnxruntime runs it, and is marked so: its pruned export stores float16 weights again,
    unasked, with float32 arithmetic (not the float16 converter of mixed-precision files), and
    keeps the mask."""
    from core.cli import main
    from core.prunable import prunable_parameters

    demo = load_demo("digits_cnn")
    bundle = load_bundle("digits")
    x = bundle.evaluation.x
    written = export_onnx(demo.model, x[:2], tmp_path / "half.onnx", float16=True, sparse=sparse)
    assert written.float16_tensors >= 2
    loaded = load_model(tmp_path / "half.onnx")
    graph = loaded.model
    assert isinstance(graph, OnnxGraphModule) and graph.float16_storage and not graph.float16_weights
    assert loaded.arch is None and not graph.float16_io
    names = list(prunable_parameters(graph, preset="all"))
    assert names == list(prunable_parameters(demo.model, preset="all"))  # the weights' own names
    session = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(graph(x[:32]).numpy(), session.run(None, {"input": x[:32].numpy()})[0], atol=1e-4)
    capsys.readouterr()
    assert main(["info", str(tmp_path / "half.onnx")]) == 0
    assert "stores its weights in float16 and computes in float32" in capsys.readouterr().out

    pruned = apply_result(graph, prune(graph, bundle.calibration, PruneRequest(method="magnitude", sparsity=0.7)))
    report = export_onnx(pruned, x[:2], tmp_path / "out.onnx", verify_batch=x[:16], sparse=sparse)
    assert report.float16 and report.float16_tensors == written.float16_tensors
    assert report.max_abs_diff < 1e-4  # its weights were float16 already: nothing more is rounded
    assert all(a == b for a, b in report.zero_fractions.values())
    again = onnx.load(str(tmp_path / "out.onnx"))
    assert not any(n.op_type == "Cast" and n.output[0] not in names for n in again.graph.node)
