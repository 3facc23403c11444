"""Torchvision networks of other shapes than the literature's, pruned and exported end to end.

Depthwise and grouped convolutions with squeeze-excitation (MobileNetV3), channel shuffles
(ShuffleNetV2) and a 1×1-convolution classifier (SqueezeNet), each saved as a state_dict
fine-tuned for CIFAR-10's 10 classes (the checkpoint's head is read from the file), pruned by
CHITA from the CLI on real CIFAR-10 images at their 32×32 size, and exported to ONNX.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.architectures import build_architecture
from core.cli import main


@pytest.mark.shared
@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1"])
def test_torchvision_network_prunes_and_exports(arch, shared_dir, tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / f"{arch}.pt"
    torch.save(build_architecture(arch, num_classes=10).state_dict(), ckpt)
    out = tmp_path / f"{arch}.onnx"
    code = main(["prune", str(ckpt), "--arch", arch, "--data", str(shared_dir / "data" / "cifar10"),
                 "--input-shape", "3,32,32", "--method", "chita", "--sparsity", "0.5",
                 "--samples", "16", "--max-calibration", "120", "--max-eval", "16",
                 "--out", str(out), "--json", "-q"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["nonzeros"] == round(0.5 * data["prunable_weights"])
    assert data["objective"] <= data["magnitude_objective"]
    assert data["export"]["max_abs_diff"] < 1e-3
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 32, 32), dtype=np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (1, 10)
