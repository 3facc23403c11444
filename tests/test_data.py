"""Tests for core.data: every source kind, presets, disjoint splits and every bad input."""

from __future__ import annotations

import gzip
import pickle
import struct
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.architectures import DIGITS_MEAN, DIGITS_STD
from core.data import (
    PRESETS,
    DataBundle,
    ImageSet,
    Normalization,
    check_compatible,
    dataset_cache_dir,
    load_bundle,
    load_evaluation,
    preset_for_shape,
)
from core.errors import StudioError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MNIST_DIR = SHARED / "data" / "mnist"
CIFAR_DIR = SHARED / "data" / "cifar10"


# --------------------------------------------------------------------------- helpers


def write_idx(path: Path, arr: np.ndarray) -> Path:
    """Write ``arr`` (uint8) as an IDX file; gzip it when the name ends in .gz."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    data = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_mnist_pair(folder: Path, prefix: str, x: np.ndarray, y: np.ndarray, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y)
    return write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x)


def write_cifar_batch(
    path: Path, x_chw: np.ndarray, labels: list[int], protocol: int = 4, bytes_keys: bool = False
) -> None:
    entry = {"data": x_chw.reshape(len(x_chw), -1), "labels": labels, "batch_label": "test"}
    if bytes_keys:
        entry = {k.encode(): v for k, v in entry.items()}
    path.write_bytes(pickle.dumps(entry, protocol=protocol))


def write_cifar_dir(folder: Path, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny cifar-10-batches-py: 5 training batches and a test batch of ``per_batch`` images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        write_cifar_batch(folder / name, x, y.tolist())
        batches[name] = x
    return batches


def tiny_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(StudioError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def mnist_value(pixel: float) -> float:
    return (pixel / 255 - 0.1307) / 0.3081


def assert_disjoint_cover(bundle: DataBundle, n: int) -> None:
    cal = set(bundle.calibration.indices.tolist())
    ev = set(bundle.evaluation.indices.tolist())
    assert len(cal) == len(bundle.calibration) and len(ev) == len(bundle.evaluation)
    assert not cal & ev
    assert cal | ev == set(range(n))


# --------------------------------------------------------------------------- presets


def test_presets_hold_shapes_and_map_known_pixels() -> None:
    assert set(PRESETS) == {"mlpnet", "resnet20", "digits", "imagenet"}
    assert PRESETS["mlpnet"].input_shape == (1, 28, 28)
    assert PRESETS["resnet20"].input_shape == (3, 32, 32)
    assert PRESETS["digits"].input_shape == (1, 8, 8)
    assert PRESETS["imagenet"].input_shape == (3, 224, 224)
    assert PRESETS["digits"].scale == 16.0
    assert preset_for_shape((3, 32, 32)) == "resnet20" and preset_for_shape((2, 5, 5)) is None

    grey = np.array([0, 255, 51], dtype=np.uint8).reshape(1, 1, 1, 3)
    out = PRESETS["mlpnet"].apply(grey).flatten().tolist()
    assert out == pytest.approx([mnist_value(0), mnist_value(255), mnist_value(51)], abs=1e-6)

    rgb = np.zeros((1, 3, 1, 2), dtype=np.uint8)
    rgb[..., 1] = 255
    out = PRESETS["resnet20"].apply(rgb)
    assert out[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0] and out[0, :, 0, 1].tolist() == [1.0, 1.0, 1.0]

    digit = np.full((1, 1, 1, 1), 16.0)
    assert PRESETS["digits"].apply(digit).item() == pytest.approx((1 - DIGITS_MEAN) / DIGITS_STD, abs=1e-6)

    white = np.full((1, 3, 1, 1), 255, dtype=np.uint8)
    expected = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    assert PRESETS["imagenet"].apply(white).flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_normalization_does_not_touch_its_input() -> None:
    x = np.full((2, 1, 2, 2), 0.5, dtype=np.float32)
    out = Normalization((0.5,), (0.25,), 1.0).apply(x)
    assert out.dtype == torch.float32 and torch.all(out == 0)
    assert np.all(x == 0.5)


# --------------------------------------------------------------------------- digits


def test_digits_split_is_disjoint_and_matches_raw_images() -> None:
    from sklearn.datasets import load_digits

    from core.demo import digits_split

    b = load_bundle("digits")
    assert b.preset == "digits" and b.num_classes == 10 and b.input_shape == (1, 8, 8)
    assert b.calibration.x.dtype == torch.float32 and b.calibration.y.dtype == torch.int64
    assert len(b.calibration) + len(b.evaluation) == 1797
    assert_disjoint_cover(b, 1797)
    train_idx, test_idx = digits_split()
    assert set(b.calibration.indices.tolist()) == set(np.asarray(train_idx).tolist())
    assert b.evaluation.indices.tolist() == list(np.asarray(test_idx))

    raw = load_digits()
    # undo the normalisation and compare with scikit-learn's own images, row by row
    for part in (b.calibration, b.evaluation):
        pixels = (part.x.numpy()[:, 0] * DIGITS_STD + DIGITS_MEAN) * 16
        idx = part.indices.numpy()
        np.testing.assert_allclose(pixels, raw.images[idx], atol=1e-4)
        assert part.y.tolist() == raw.target[idx].tolist()
    # no evaluation image appears (by content) anywhere in calibration
    cal_rows = {np.round(r * 1000).astype(np.int64).tobytes() for r in b.calibration.x.numpy()}
    assert not any(np.round(r * 1000).astype(np.int64).tobytes() in cal_rows for r in b.evaluation.x.numpy())


# --------------------------------------------------------------------------- shared data


@pytest.mark.shared
def test_shared_mnist_dir_train_npz_and_t10k_idx() -> None:
    t0 = time.perf_counter()
    b = load_bundle(str(MNIST_DIR))
    seconds = time.perf_counter() - t0
    assert b.preset == "mlpnet" and b.num_classes == 10 and b.input_shape == (1, 28, 28)
    assert tuple(b.calibration.x.shape) == (14262, 1, 28, 28) and "train.npz" in b.calibration.source
    assert tuple(b.evaluation.x.shape) == (10000, 1, 28, 28) and "t10k-images" in b.evaluation.source
    assert b.evaluation.y[:3].tolist() == [7, 2, 1]  # MNIST's first test labels
    raw = np.load(MNIST_DIR / "train.npz")
    i = int(b.calibration.indices[0])
    expected = torch.from_numpy(mnist_value(raw["x"][i].astype(np.float64))).float()
    assert torch.allclose(b.calibration.x[0, 0], expected, atol=1e-5)
    assert int(b.calibration.y[0]) == int(raw["y"][i])
    assert seconds < 3.0

    t0 = time.perf_counter()
    ev = load_evaluation(str(MNIST_DIR / "t10k-images-idx3-ubyte.gz"))
    assert time.perf_counter() - t0 < 1.0
    assert len(ev) == 10000 and torch.equal(ev.x, b.evaluation.x)


@pytest.mark.shared
def test_shared_cifar10_dir_hwc_to_chw() -> None:
    b = load_bundle(str(CIFAR_DIR), max_evaluation=100)
    assert b.preset == "resnet20" and b.input_shape == (3, 32, 32)
    assert len(b.calibration) == 4660 and len(b.evaluation) == 100
    raw = np.load(CIFAR_DIR / "test.npz")
    expected = torch.from_numpy(raw["x"][:100].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    assert torch.allclose(b.evaluation.x, expected, atol=1e-6)
    assert b.evaluation.y.tolist() == raw["y"][:100].tolist()
    assert b.evaluation.indices.tolist() == list(range(100))
    assert "first 100 of 846" in b.evaluation.source


@pytest.mark.shared
def test_shared_cifar_data_for_mnist_model_names_expected_shape() -> None:
    msg = error_of(load_bundle, str(CIFAR_DIR), preset="mlpnet")
    assert "train.npz" in msg and "[field: x]" in msg
    assert "3x32x32" in msg and "1x28x28" in msg and "mlpnet" in msg and "resnet20" in msg


# --------------------------------------------------------------------------- IDX files


def test_idx_folder_gz_and_plain(tmp_path: Path) -> None:
    xtr, ytr = tiny_mnist(12, seed=1)
    xte, yte = tiny_mnist(6, seed=2)
    write_mnist_pair(tmp_path, "train", xtr, ytr, gz=False)
    write_mnist_pair(tmp_path, "t10k", xte, yte, gz=True)
    b = load_bundle(str(tmp_path), preset="mlpnet", max_calibration=5)
    assert len(b.calibration) == 5 and len(b.evaluation) == 6
    idx = b.calibration.indices.numpy()
    assert len(set(idx.tolist())) == 5 and idx.max() < 12
    expected = torch.from_numpy(mnist_value(xtr[idx].astype(np.float64))).float()
    assert torch.allclose(b.calibration.x[:, 0], expected, atol=1e-5)
    assert b.calibration.y.tolist() == ytr[idx].tolist()
    assert b.evaluation.y.tolist() == yte.tolist()
    again = load_bundle(str(tmp_path), preset="mlpnet", max_calibration=5)
    assert torch.equal(again.calibration.indices, b.calibration.indices)
    other = load_bundle(str(tmp_path), preset="mlpnet", max_calibration=5, seed=1)
    assert not torch.equal(other.calibration.indices, b.calibration.indices)


def test_single_idx_file_is_split_disjointly(tmp_path: Path) -> None:
    x, y = tiny_mnist(20)
    images = write_mnist_pair(tmp_path, "t10k", x, y)
    b = load_bundle(str(images))
    assert_disjoint_cover(b, 20)
    assert len(b.evaluation) == 6 and len(b.calibration) == 14
    assert "seeded split" in b.calibration.source and "seeded split" in b.evaluation.source
    assert b.evaluation.indices.tolist() == sorted(b.evaluation.indices.tolist())
    # eval command: the whole file, in order
    ev = load_evaluation(str(tmp_path / "t10k-labels-idx1-ubyte.gz"))
    assert ev.y.tolist() == y.tolist() and ev.indices.tolist() == list(range(20))


def test_idx_missing_labels_and_truncated(tmp_path: Path) -> None:
    x, _ = tiny_mnist(4)
    images = write_idx(tmp_path / "t10k-images-idx3-ubyte", x)
    msg = error_of(load_bundle, str(images))
    assert "t10k-labels-idx1-ubyte" in msg and "t10k-images-idx3-ubyte" in msg and "[field: labels]" in msg

    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    images.write_bytes(images.read_bytes()[:-10])
    msg = error_of(load_bundle, str(images))
    assert "t10k-images-idx3-ubyte" in msg and "truncated" in msg and "[field: data]" in msg

    images.write_bytes(b"\x01\x02\x03\x04rubbish")
    msg = error_of(load_bundle, str(images))
    assert "t10k-images-idx3-ubyte" in msg and "IDX" in msg and "[field: header]" in msg


# --------------------------------------------------------------------------- CIFAR batches


def test_cifar_batches_dir_and_parent(tmp_path: Path) -> None:
    batches = write_cifar_dir(tmp_path / "cifar-10-batches-py")
    for src in (tmp_path, tmp_path / "cifar-10-batches-py"):
        b = load_bundle(str(src))
        assert b.preset == "resnet20" and b.name == "cifar10"
        assert len(b.calibration) == 20 and len(b.evaluation) == 4
        assert torch.allclose(b.evaluation.x, torch.from_numpy(batches["test_batch"] / 127.5 - 1).float(), atol=1e-6)
        train = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)])
        idx = b.calibration.indices.numpy()
        assert sorted(idx.tolist()) == list(range(20))
        assert torch.allclose(b.calibration.x, torch.from_numpy(train[idx] / 127.5 - 1).float(), atol=1e-6)


def test_cifar_batch_protocol2_bytes_keys(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 32 * 32, dtype=np.int64).reshape(2, 3, 32, 32) % 256
    write_cifar_batch(tmp_path / "test_batch", x.astype(np.uint8), [3, 9], protocol=2, bytes_keys=True)
    ev = load_evaluation(str(tmp_path / "test_batch"))
    assert ev.y.tolist() == [3, 9]
    assert ev.x[0, 1, 0, 0].item() == pytest.approx((32 * 32 % 256) / 127.5 - 1)  # green plane starts at 1024


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_cifar_pickle_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_dir(folder)
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": _Hostile(marker), "labels": [0]}))
    msg = error_of(load_bundle, str(tmp_path))
    assert not marker.exists()
    assert "data_batch_1" in msg and "refused" in msg and "[field: pickle]" in msg
    # the same through the single-file path
    (folder / "test_batch").write_bytes(pickle.dumps([_Hostile(marker)]))
    msg = error_of(load_evaluation, str(folder / "test_batch"))
    assert not marker.exists() and "test_batch" in msg


# --------------------------------------------------------------------------- npz


def test_npz_dir_and_single_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 30)
    save_npz(tmp_path / "train.npz", x=x[:20], y=y[:20])
    save_npz(tmp_path / "test.npz", x=x[20:], y=y[20:])
    b = load_bundle(str(tmp_path), max_evaluation=4)
    assert len(b.calibration) == 20 and b.evaluation.y.tolist() == y[20:24].tolist()

    single = save_npz(tmp_path / "all.npz", x=x, y=y)
    b = load_bundle(str(single), seed=3)
    assert_disjoint_cover(b, 30)
    assert "seed 3" in b.calibration.source
    same = load_bundle(str(single), seed=3)
    assert torch.equal(same.evaluation.indices, b.evaluation.indices)
    idx = b.evaluation.indices.numpy()
    assert torch.allclose(b.evaluation.x, torch.from_numpy(x[idx].transpose(0, 3, 1, 2) / 127.5 - 1).float(), atol=1e-6)
    assert len(load_evaluation(str(single))) == 30


def test_shape_mismatch_names_the_model_or_the_preset_whichever_set_the_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    single = save_npz(tmp_path / "all.npz", x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
                      y=rng.integers(0, 10, 12))
    msg = error_of(load_bundle, str(single), preset="resnet20", input_shape=(3, 224, 224))
    assert "the model expects 3x224x224" in msg and "preset 'resnet20' expects" not in msg
    assert "--input-shape" in msg and "all.npz" in msg
    msg = error_of(load_bundle, str(single), preset="mlpnet")
    assert "preset 'mlpnet' expects 1x28x28" in msg and "--input-shape" not in msg
    # the 'imagenet' preset is a torchvision network's, and those often run at the data's size
    msg = error_of(load_bundle, str(single), preset="imagenet")
    assert "preset 'imagenet' expects 3x224x224" in msg and "--input-shape" in msg


def test_eval_source_and_custom_mean_std(tmp_path: Path) -> None:
    xa, ya = tiny_mnist(10, seed=1)
    xb, yb = tiny_mnist(7, seed=2)
    a = save_npz(tmp_path / "a.npz", x=xa, y=ya.astype(np.int64))
    bfile = save_npz(tmp_path / "b.npz", x=xb, y=yb.astype(np.int64))
    b = load_bundle(str(a), eval_source=str(bfile), mean=[0.5], std=[0.5])
    assert b.preset is None and b.normalization.scale == 255.0
    assert len(b.calibration) == 10 and b.evaluation.y.tolist() == yb.tolist()
    assert b.evaluation.x[0, 0].numpy() == pytest.approx(xb[0] / 127.5 - 1, abs=1e-6)
    # eval_source naming the same file falls back to a disjoint split
    assert_disjoint_cover(load_bundle(str(a), eval_source=str(a)), 10)
    same = load_bundle("digits", eval_source="digits")
    assert len(same.calibration) + len(same.evaluation) == 1797
    assert not set(same.calibration.indices.tolist()) & set(same.evaluation.indices.tolist())


def test_flat_and_channel_last_layouts(tmp_path: Path) -> None:
    x, y = tiny_mnist(6)
    flat = save_npz(tmp_path / "flat.npz", x=x.reshape(6, -1), y=y)
    ev = load_evaluation(str(flat), preset="mlpnet")
    assert ev.x.shape == (6, 1, 28, 28)
    assert torch.allclose(ev.x[:, 0], torch.from_numpy(mnist_value(x.astype(np.float64))).float(), atol=1e-5)
    msg = error_of(load_evaluation, str(flat))
    assert "flat.npz" in msg and "2 dimension(s)" in msg and "[field: x]" in msg


# --------------------------------------------------------------------------- ImageFolder


def make_image_folder(root: Path, counts: dict[str, int], size=(10, 12)) -> None:
    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", size, colours[cls]).save(root / cls / f"{i}.png")


def test_image_folder_train_test_resized(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "train", {"cat": 3, "dog": 2, "emu": 1})
    make_image_folder(tmp_path / "val", {"cat": 1, "emu": 1})
    b = load_bundle(str(tmp_path), preset="resnet20")
    assert b.input_shape == (3, 32, 32) and b.num_classes == 3
    assert len(b.calibration) == 6 and b.evaluation.y.tolist() == [0, 2]  # class index by name, shared with train
    # emu is pure blue: (0, 0, 255) -> (-1, -1, 1) after x/255, mean 0.5, std 0.5
    emu = b.evaluation.x[1]
    assert emu.shape == (3, 32, 32)
    assert emu[:, 5, 7].tolist() == [-1.0, -1.0, 1.0]


def test_image_folder_imagenet_resize_and_centre_crop(tmp_path: Path) -> None:
    img = Image.new("RGB", (300, 240), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 30, 240))  # a black strip at the left edge, cropped away
    (tmp_path / "test" / "n01").mkdir(parents=True)
    img.save(tmp_path / "test" / "n01" / "a.png")
    ev = load_evaluation(str(tmp_path), preset="imagenet")
    assert ev.x.shape == (1, 3, 224, 224) and ev.y.tolist() == [0]
    white = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    assert ev.x[0, :, :, 0].amin(dim=1).tolist() == pytest.approx(white, abs=1e-5)


def test_single_image_folder_split_and_unknown_class(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "flowers", {"cat": 5, "dog": 5}, size=(32, 32))
    b = load_bundle(str(tmp_path / "flowers"))  # 3x32x32 -> preset resnet20 by shape
    assert b.preset == "resnet20"
    assert_disjoint_cover(b, 10)

    make_image_folder(tmp_path / "two" / "train", {"cat": 1})
    make_image_folder(tmp_path / "two" / "test", {"cat": 1, "dog": 1})
    msg = error_of(load_bundle, str(tmp_path / "two"), preset="resnet20")
    assert "test" in msg and "dog" in msg and "[field: classes]" in msg


# --------------------------------------------------------------------------- torchvision names


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHITA_STUDIO_CACHE", str(tmp_path))
    assert dataset_cache_dir() == tmp_path / "datasets"
    return tmp_path / "datasets"


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def test_torchvision_mnist_offline_messages(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import utils as tv_utils

    raw = str(cache / "MNIST" / "raw")
    msg = error_of(load_bundle, "mnist")
    assert raw in msg and "--download" in msg and "t10k-images-idx3-ubyte" in msg

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", _offline)
    msg = error_of(load_bundle, "mnist", download=True)
    assert raw in msg and "no network" in msg and "[field: download]" in msg

    msg = error_of(load_bundle, "cifar10", download=True)
    assert str(cache / "cifar-10-batches-py") in msg and "no network" in msg
    msg = error_of(load_bundle, "cifar10")
    assert str(cache / "cifar-10-batches-py") in msg and "--download" in msg


def test_torchvision_layout_success(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xtr, ytr = tiny_mnist(8, seed=1)
    xte, yte = tiny_mnist(5, seed=2)
    raw = cache / "MNIST" / "raw"
    write_mnist_pair(raw, "train", xtr, ytr, gz=False)
    write_mnist_pair(raw, "t10k", xte, yte, gz=False)
    b = load_bundle("mnist")
    assert b.preset == "mlpnet" and len(b.calibration) == 8 and b.evaluation.y.tolist() == yte.tolist()

    write_cifar_dir(cache / "cifar-10-batches-py", per_batch=2)
    b = load_bundle("cifar10")
    assert b.preset == "resnet20" and len(b.calibration) == 10 and len(b.evaluation) == 2


def test_download_path_fills_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import utils as tv_utils

    x, y = tiny_mnist(3)
    calls = []

    def fake_download(url, download_root, filename, md5):
        calls.append(url)
        prefix = filename.split("-")[0]
        target = Path(download_root) / filename.removesuffix(".gz")
        write_idx(target, x if "images" in filename else y)
        assert prefix in ("train", "t10k")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    b = load_bundle("mnist", download=True)
    assert len(calls) == 4 and len(b.calibration) == 3 and b.evaluation.y.tolist() == y.tolist()


# --------------------------------------------------------------------------- bad inputs

MLP = {"preset": "mlpnet"}


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "field", "words"),
    [
        (np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 2, 10]), MLP, "y", ["up to 10", "mlpnet", "10 classes"]),
        (np.zeros((4, 28, 28), np.uint8), np.array([0, -1, 2, 3]), {}, "y", ["negative", "-1"]),
        (np.zeros((4, 28, 28), np.uint8), np.array([0.0, 1.5, 2.0, 3.0]), {}, "y", ["not whole numbers", "1.5"]),
        (np.zeros((4, 28, 28), np.uint8), np.array(["a", "b", "c", "d"]), {}, "y", ["not whole numbers"]),
        (np.zeros((4, 2, 2, 28, 28), np.uint8), np.zeros(4, np.int64), {}, "x", ["5 dimension(s)"]),
        (np.zeros(4, np.uint8), np.zeros(4, np.int64), {}, "x", ["1 dimension(s)"]),
        (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64), MLP, "x", ["3x32x32", "1x28x28", "mlpnet"]),
        (np.full((4, 28, 28), "a"), np.zeros(4, np.int64), {}, "x", ["not numeric", "<U1"]),
        (np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.int64), {}, "y", ["4 images", "3 labels"]),
        (np.full((4, 28, 28), np.nan, np.float32), np.zeros(4, np.int64), {}, "x", ["NaN", "4 image(s)"]),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), {}, "x", ["empty"]),
        (np.full((4, 28, 28), -0.4, np.float32), np.zeros(4, np.int64), {}, "x", ["already normalised"]),
        (np.zeros((4, 28, 28), np.uint8), np.zeros((4, 10), np.int64), {}, "y", ["(4, 10)", "argmax"]),
        (np.zeros((4, 5, 5), np.uint8), np.zeros(4, np.int64), {}, "preset", ["5x5", "mean and std"]),
    ],
)
def test_bad_npz_inputs_name_file_field_and_fix(tmp_path: Path, x, y, kwargs, field, words) -> None:
    path = save_npz(tmp_path / "bad.npz", x=x, y=y)
    for loader in (load_bundle, load_evaluation):
        msg = error_of(loader, str(path), **kwargs)
        assert str(path) in msg and f"[field: {field}]" in msg and "What to do:" in msg
        for w in words:
            assert w in msg


def test_npz_missing_key_lists_keys(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "keys.npz", images=np.zeros((2, 28, 28), np.uint8), y=np.zeros(2, np.int64))
    msg = error_of(load_bundle, str(path))
    assert "keys.npz" in msg and "[field: x]" in msg and "'images'" in msg and "'y'" in msg and "savez" in msg


def test_bad_sources_and_arguments(tmp_path: Path) -> None:
    msg = error_of(load_bundle, str(tmp_path / "nowhere.npz"))
    assert "nowhere.npz" in msg and "[field: source]" in msg
    (tmp_path / "empty").mkdir()
    msg = error_of(load_bundle, str(tmp_path / "empty"))
    assert "empty" in msg and "train.npz" in msg
    (tmp_path / "notes.txt").write_text("hi")
    assert "notes.txt" in error_of(load_bundle, str(tmp_path / "notes.txt"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert "broken.npz" in error_of(load_bundle, str(tmp_path / "broken.npz"))
    assert "[field: preset]" in error_of(load_bundle, "digits", preset="mnist")
    assert "[field: max_calibration]" in error_of(load_bundle, "digits", max_calibration=0)
    assert "[field: std]" in error_of(load_bundle, "digits", mean=[0.1], std=[0.0])
    assert "[field: mean]" in error_of(load_bundle, "digits", mean=[0.1, 0.2], std=[1.0])


# --------------------------------------------------------------------------- check_compatible


def _bundle(n_classes_seen: int = 10) -> DataBundle:
    x = torch.zeros(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, n_classes_seen - 1])
    s = ImageSet(x, y, "demo.npz; 4 images")
    return DataBundle("demo", s, s, n_classes_seen, (1, 8, 8))


def test_check_compatible() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    check_compatible(_bundle(), model, input_shape=(1, 8, 8), num_classes=10)
    assert model.training  # the model's mode is left as it was
    model.eval()
    check_compatible(_bundle(), model, input_shape=(1, 8, 8), num_classes=10)
    assert not model.training

    msg = error_of(check_compatible, _bundle(), model, input_shape=(1, 28, 28))
    assert "demo.npz" in msg and "1x8x8" in msg and "1x28x28" in msg and "mlpnet" in msg and "[field: x]" in msg
    msg = error_of(check_compatible, _bundle(12), model, input_shape=(1, 8, 8), num_classes=10)
    assert "up to 11" in msg and "10 classes" in msg and "[field: y]" in msg
    msg = error_of(check_compatible, _bundle(12), model, input_shape=(1, 8, 8))
    assert "10 class scores" in msg and "[field: y]" in msg
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    msg = error_of(check_compatible, _bundle(), wrong, input_shape=(1, 8, 8))
    assert "fails on one 1x8x8 image" in msg and "RuntimeError" in msg
