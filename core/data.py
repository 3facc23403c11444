"""Images and labels in: digits, MNIST IDX, CIFAR-10 batches, ``.npz``, ImageFolder, torchvision.

:func:`load_bundle` turns a source into a :class:`DataBundle`: a calibration set (from a
training split) and an evaluation set (from a test split) that never share an image, both
normalised with a preset (:data:`PRESETS`) or an explicit mean/std. Every problem with the
data is found before any compute and reported as a :class:`~core.errors.StudioError` that
names the file, the field and the fix.

Nothing here runs code from a data file: ``.npz`` files are read without pickle, and
CIFAR-10's pickled batches go through an unpickler that only rebuilds numpy arrays.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from core.architectures import CIFAR10_CLASSES, DIGITS_MEAN, DIGITS_STD
from core.errors import StudioError

__all__ = [
    "Normalization",
    "PRESETS",
    "ImageSet",
    "DataBundle",
    "load_bundle",
    "load_evaluation",
    "read_class_names",
    "check_compatible",
    "dataset_cache_dir",
    "preset_for_shape",
]

# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Normalization:
    """How raw pixels become model inputs: ``(x / scale - mean) / std`` per channel.

    A preset also records the per-sample ``input_shape`` (C, H, W) and the ``num_classes``
    of the models it belongs to. ``mean`` and ``std`` have one entry per channel, or one
    entry for all channels.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None

    def apply(self, x: np.ndarray) -> torch.Tensor:
        """Normalise raw images ``x`` (N, C, H, W) into a new float32 tensor."""
        out = torch.from_numpy(np.array(x, dtype=np.float32, copy=True))  # never alias the caller's array
        channels = out.shape[1]
        mean = torch.tensor(_per_channel(self.mean, channels), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(_per_channel(self.std, channels), dtype=torch.float32).view(1, -1, 1, 1)
        return out.div_(self.scale).sub_(mean).div_(std)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs ``x`` (N, C, H, W) back to pixels over ``scale``: ``x·std + mean``, in
        [0, 1] for pixels that were in [0, scale] (a new tensor)."""
        channels = x.shape[1]
        mean = torch.tensor(_per_channel(self.mean, channels), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(_per_channel(self.std, channels), dtype=torch.float32).view(1, -1, 1, 1)
        return x.to(torch.float32) * std + mean


def _digits_normalization() -> Normalization:
    mean = tuple(float(v) for v in np.atleast_1d(DIGITS_MEAN))
    std = tuple(float(v) for v in np.atleast_1d(DIGITS_STD))
    return Normalization(mean, std, 16.0, (1, 8, 8), 10)


PRESETS: dict[str, Normalization] = {
    "mlpnet": Normalization((0.1307,), (0.3081,), 255.0, (1, 28, 28), 10),
    "resnet20": Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 255.0, (3, 32, 32), 10),
    "digits": _digits_normalization(),
    "imagenet": Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0, (3, 224, 224), 1000),
}
"""Normalisation presets by name; each also holds the input shape and class count."""


def class_name(label: int, names: Sequence[str] | None = None) -> str:
    """Class ``label``'s name in ``names`` (an ImageSet's ``class_names``), or its number where
    there are no names or none for it."""
    return names[label] if names is not None and 0 <= label < len(names) else str(label)


@dataclass(frozen=True)
class ImageSet:
    """Normalised images and their labels.

    ``x`` is (N, C, H, W) float32, ``y`` is (N,) int64, ``source`` says where they came from
    in words. ``indices`` (int64, optional) are the rows' positions in the file or split
    they were read from, so that subsets and splits can be checked and reproduced.
    ``class_names`` name the labels where the source does (CIFAR-10, ImageFolder subfolders,
    an ``.npz`` file's ``class_names`` array); elsewhere a class is its number.
    """

    x: torch.Tensor
    y: torch.Tensor
    source: str
    indices: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None  # by label, where the source names its classes

    def class_name(self, label: int) -> str:
        """The name of class ``label`` (its number where the source gives no names)."""
        return class_name(label, self.class_names)

    def __len__(self) -> int:
        return int(self.y.shape[0])


WORDNET_ID = re.compile(r"n\d{8}")  # ImageNet's folder names: n01440764 is "tench"


def named_by_model(images: ImageSet, names: Sequence[str] | None) -> ImageSet:
    """``images`` with the model's class names (``names``, by output index: torchvision's
    pretrained weights carry ImageNet's) where the data names its classes not at all or only by
    WordNet IDs, the folder names of ImageNet's validation set, and has as many classes as
    ``names``. ImageFolder numbers the folders in sorted order, which is the order of those
    weights' outputs. Names the data gives in words (or a user gave) are kept."""
    if not names or len(images) == 0:
        return images
    own = images.class_names
    if own is not None and not all(WORDNET_ID.fullmatch(n) for n in own):
        return images
    count = len(own) if own is not None else int(images.y.max()) + 1
    if own is None and count > len(names) or own is not None and count != len(names):
        return images
    return replace(images, class_names=tuple(names))


def bundle_named_by_model(bundle: "DataBundle", names: Sequence[str] | None) -> "DataBundle":
    """:func:`named_by_model` on both of ``bundle``'s image sets (the same bundle where neither changes)."""
    cal, ev = named_by_model(bundle.calibration, names), named_by_model(bundle.evaluation, names)
    if cal is bundle.calibration and ev is bundle.evaluation:
        return bundle
    return replace(bundle, calibration=cal, evaluation=ev)


@dataclass(frozen=True)
class DataBundle:
    """Calibration images (training split) and evaluation images (test split), never overlapping."""

    name: str
    calibration: ImageSet
    evaluation: ImageSet
    num_classes: int
    input_shape: tuple[int, ...]
    preset: str | None = None
    normalization: Normalization | None = None


# --------------------------------------------------------------------------- raw data


@dataclass(frozen=True)
class _Raw:
    """Images and labels as stored, plus what error messages need to name them."""

    x: np.ndarray
    y: np.ndarray
    description: str  # e.g. "…/t10k-images-idx3-ubyte.gz"
    x_path: str
    y_path: str
    x_field: str = "x"
    y_field: str = "y"
    num_classes: int | None = None  # known from the source itself (ImageFolder classes)
    indices: np.ndarray | None = None  # row positions in the file; None means arange(N)
    class_names: tuple[str, ...] | None = None  # by label, where the source names them

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self) -> np.ndarray:
        return np.arange(len(self)) if self.indices is None else self.indices

    def take(self, idx: np.ndarray, description: str) -> _Raw:
        return replace(self, x=self.x[idx], y=self.y[idx], indices=self.rows()[idx], description=description)


@dataclass(frozen=True)
class _Resolved:
    """A source resolved into its training and/or test part."""

    name: str
    train: _Raw | None
    test: _Raw | None

    @property
    def calibration_part(self) -> _Raw:
        """The training split, or the only split there is."""
        part = self.train if self.train is not None else self.test
        assert part is not None
        return part

    @property
    def evaluation_part(self) -> _Raw:
        """The test split, or the only split there is."""
        part = self.test if self.test is not None else self.train
        assert part is not None
        return part


_IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_TRAIN_IDX = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
_TEST_IDX = ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_SINGLE_FILE_EVAL_FRACTION = 0.3


# --------------------------------------------------------------------------- public API


def dataset_cache_dir() -> Path:
    """Folder for downloaded datasets: ``$CHITA_STUDIO_CACHE/datasets`` or ``~/.cache/chita-studio/datasets``."""
    root = os.environ.get("CHITA_STUDIO_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "chita-studio"
    return base / "datasets"


def preset_for_shape(input_shape: Sequence[int]) -> str | None:
    """The preset whose models take samples of ``input_shape``, or None."""
    for name, norm in PRESETS.items():
        if norm.input_shape == tuple(input_shape):
            return name
    return None


def load_bundle(
    source: str,
    *,
    preset: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_shape: Sequence[int] | None = None,
    eval_source: str | None = None,
    max_calibration: int | None = None,
    max_evaluation: int | None = None,
    download: bool = False,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> DataBundle:
    """Load calibration and evaluation images from ``source`` (and ``eval_source``).

    ``source`` is ``"digits"``, ``"mnist"``, ``"cifar10"``, a folder (MNIST IDX files,
    CIFAR-10 batches, ``train.npz``/``test.npz``, ImageFolder ``train/``+``test/``) or one
    ``.npz``/IDX file. Calibration comes from the training split and evaluation from the
    test split; a source with one split only is divided by a seeded permutation into disjoint
    parts (70% calibration, 30% evaluation). With ``eval_source``, evaluation comes from there.
    Calibration is a seeded permutation of its split, cut to ``max_calibration``; evaluation
    keeps the file's order, cut to its first ``max_evaluation`` images.
    Normalisation comes from ``preset`` (or the preset matching the data's shape), with
    ``mean``/``std`` overriding it. An existing file or folder wins over a name of the same
    spelling; ``"mnist"``/``"cifar10"`` read torchvision's layout under
    :func:`dataset_cache_dir` and download there only with ``download=True``.
    ``class_names`` name the labels in order (over any names the source gives; one per label at
    least). Raises :class:`StudioError` for any problem with the data, before any compute.
    """
    _check_preset_name(preset)
    _check_limit(max_calibration, "max_calibration")
    _check_limit(max_evaluation, "max_evaluation")
    target = _target_shape(preset, input_shape)
    src = _resolve(source, download=download, target=target, preset=preset)
    evs = None
    if eval_source is not None:
        evs = _resolve(eval_source, download=download, target=target, preset=preset)
    rng = np.random.default_rng(seed)

    if evs is not None and _same_data(src.calibration_part, evs.evaluation_part):
        evs = None  # the same images: treat as no eval_source, so the parts stay disjoint
    if evs is not None:
        cal_raw = _validated(src.calibration_part, target, preset)
        eval_raw = _validated(evs.evaluation_part, target, preset)
    elif src.train is not None and src.test is not None:
        cal_raw = _validated(src.train, target, preset)
        eval_raw = _validated(src.test, target, preset)
    else:  # one split only: divide it into disjoint parts
        cal_raw, eval_raw = _split(_validated(src.calibration_part, target, preset), rng, seed)
    if cal_raw.x.shape[1:] != eval_raw.x.shape[1:]:
        raise StudioError(
            f"Calibration images are {_fmt_shape(cal_raw.x.shape[1:])} but evaluation images are "
            f"{_fmt_shape(eval_raw.x.shape[1:])}.",
            path=eval_raw.x_path,
            field=eval_raw.x_field,
            fix="Use calibration and evaluation data of the same kind and image size.",
        )
    shape = tuple(int(d) for d in cal_raw.x.shape[1:])
    preset_name, norm = _normalization(preset, mean, std, shape, cal_raw)
    num_classes = _num_classes(norm, preset_name, cal_raw, eval_raw)
    for raw in (cal_raw, eval_raw):
        _check_values(raw, norm, preset_name)

    n_cal = len(cal_raw)
    order = rng.permutation(n_cal)
    if max_calibration is not None and max_calibration < n_cal:
        order = order[:max_calibration]
        cal_desc = f"{cal_raw.description}; {len(order):,} of {n_cal:,} images (seeded permutation, seed {seed})"
    else:
        cal_desc = f"{cal_raw.description}; {n_cal:,} images in seeded order (seed {seed})"
    cal_raw = cal_raw.take(order, cal_desc)
    n_eval = len(eval_raw)
    if max_evaluation is not None and max_evaluation < n_eval:
        eval_desc = f"{eval_raw.description}; first {max_evaluation:,} of {n_eval:,} images"
        eval_raw = eval_raw.take(np.arange(max_evaluation), eval_desc)
    else:
        eval_raw = replace(eval_raw, description=f"{eval_raw.description}; {n_eval:,} images")

    if class_names is not None:
        names = _checked_names(class_names, cal_raw, eval_raw)
        cal_raw, eval_raw = replace(cal_raw, class_names=names), replace(eval_raw, class_names=names)
    name = src.name if evs is None else f"{src.name} + {evs.name}"
    return DataBundle(
        name=name,
        calibration=_to_imageset(cal_raw, norm),
        evaluation=_to_imageset(eval_raw, norm),
        num_classes=num_classes,
        input_shape=shape,
        preset=preset_name,
        normalization=norm,
    )


def load_evaluation(
    source: str,
    *,
    preset: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_shape: Sequence[int] | None = None,
    max_evaluation: int | None = None,
    download: bool = False,
    class_names: Sequence[str] | None = None,
) -> ImageSet:
    """Evaluation images only (for ``eval``): a source's test split, or all of a single file
    (``class_names`` as in :func:`load_bundle`)."""
    _check_preset_name(preset)
    _check_limit(max_evaluation, "max_evaluation")
    target = _target_shape(preset, input_shape)
    src = _resolve(source, download=download, target=target, preset=preset)
    raw = _validated(src.evaluation_part, target, preset)
    shape = tuple(int(d) for d in raw.x.shape[1:])
    preset_name, norm = _normalization(preset, mean, std, shape, raw)
    _num_classes(norm, preset_name, raw, raw)
    _check_values(raw, norm, preset_name)
    n = len(raw)
    if max_evaluation is not None and max_evaluation < n:
        raw = raw.take(np.arange(max_evaluation), f"{raw.description}; first {max_evaluation:,} of {n:,} images")
    else:
        raw = replace(raw, description=f"{raw.description}; {n:,} images")
    if class_names is not None:
        raw = replace(raw, class_names=_checked_names(class_names, raw))
    return _to_imageset(raw, norm)


def read_class_names(text: str) -> tuple[str, ...]:
    """Class names from ``text``: a text file with one name per line (blank lines skipped), or
    the names themselves, comma-separated ("airplane,automobile,bird")."""
    path = Path(text).expanduser()
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise StudioError(f"Cannot read the class names: {exc}.", path=str(path), field="class_names",
                              fix="Give a UTF-8 text file with one class name per line.") from exc
        names = [line.strip() for line in lines if line.strip()]
    else:
        names = [part.strip() for part in text.split(",")]
    if not names or any(not n for n in names):
        raise StudioError(f"No usable class names in {text!r}.", field="class_names",
                          fix="List the names in label order, comma-separated (cat,dog,emu), or give a "
                              "text file with one name per line.")
    return tuple(names)


def _checked_names(names: Sequence[str], *raws: _Raw) -> tuple[str, ...]:
    """``names`` as a tuple, refused when labels go beyond them."""
    names = tuple(str(n) for n in names)
    top = max(int(np.max(r.y)) for r in raws if len(r)) if any(len(r) for r in raws) else -1
    if top >= len(names):
        raise StudioError(
            f"{len(names)} class names given, but the labels go up to {top}.",
            field="class_names",
            fix=f"Give one name per label, {top + 1} in label order (0 to {top}).",
        )
    return names


def check_compatible(
    bundle: DataBundle,
    model: torch.nn.Module,
    *,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    forward: bool = True,
) -> None:
    """Raise :class:`StudioError` unless ``bundle`` fits ``model``; run before any compute.

    Checks the per-sample shape against ``input_shape``, labels against ``num_classes`` and,
    with ``forward``, that a one-sample forward pass works and has an output per class.
    """
    expected = tuple(int(d) for d in input_shape)
    where = bundle.evaluation.source
    if tuple(bundle.input_shape) != expected:
        hint = preset_for_shape(bundle.input_shape)
        wanted = preset_for_shape(expected)
        raise StudioError(
            f"The images are {_fmt_shape(bundle.input_shape)}"
            + (f" (the '{hint}' preset's shape)" if hint else "")
            + f" but the model takes {_fmt_shape(expected)}"
            + (f" (preset '{wanted}')." if wanted else "."),
            path=where,
            field="x",
            fix="Load data that matches the model"
            + (f" (preset '{wanted}')" if wanted else "")
            + ", or load the model that was trained on this data.",
        )
    max_label = max(int(s.y.max()) for s in (bundle.calibration, bundle.evaluation))
    if num_classes is not None and max_label >= num_classes:
        raise StudioError(
            f"Labels go up to {max_label} but the model has {num_classes} classes (0 to {num_classes - 1}).",
            path=where,
            field="y",
            fix="Use data whose labels are class indices of this model, or a model with more classes.",
        )
    if not forward:
        return
    from core.evaluate import restore_mode, set_eval_mode

    was_training = set_eval_mode(model)
    try:
        with torch.no_grad():
            out = model(bundle.evaluation.x[:1])
    except Exception as exc:  # any failure here is a model/data mismatch the user must see
        raise StudioError(
            f"The model fails on one {_fmt_shape(expected)} image: {type(exc).__name__}: {exc}",
            path=where,
            field="x",
            fix="Check that the model and the data belong together (input shape and preset).",
        ) from exc
    finally:
        restore_mode(model, was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise StudioError(
            f"The model's output for one image is {got}, not (1, classes) logits.",
            path=where,
            field="output",
            fix="Use a classifier that returns one row of class scores per image.",
        )
    if out.shape[1] < max_label + 1:
        raise StudioError(
            f"The model outputs {out.shape[1]} class scores but the labels go up to {max_label}.",
            path=where,
            field="y",
            fix="Use data whose labels are class indices of this model.",
        )


# --------------------------------------------------------------------------- resolving sources


def _resolve(source: str, *, download: bool, target: tuple[int, ...] | None, preset: str | None) -> _Resolved:
    """Find what ``source`` names and read its training and test parts."""
    path = Path(str(source)).expanduser()
    key = str(source).strip().lower()
    if not path.exists():
        if key == "digits":
            return _load_digits()
        if key == "mnist":
            return _cached_mnist(download)
        if key in ("cifar10", "cifar-10"):
            return _cached_cifar10(download)
        raise StudioError(
            "No such file or folder.",
            path=str(source),
            field="source",
            fix="Give an existing data file or folder, or one of the names 'digits', 'mnist', 'cifar10'.",
        )
    if path.is_file():
        return _resolve_file(path)
    return _resolve_dir(path, target, preset)


def _resolve_file(path: Path) -> _Resolved:
    name = path.name.lower()
    if name.endswith(".npz"):
        return _Resolved(path.stem, None, _read_npz(path))
    if "idx" in name and "ubyte" in name:
        return _Resolved(_idx_stem(path), None, _read_idx_pair(path))
    if name.startswith(("data_batch_", "test_batch")):
        x, y = _read_cifar_batch(path)
        return _Resolved(path.name, None, _Raw(x, y, str(path), str(path), str(path), "data", "labels"))
    raise StudioError(
        "Unknown data file type.",
        path=str(path),
        field="source",
        fix="Use a .npz file with arrays 'x' and 'y', an MNIST IDX file (…-images-idx3-ubyte[.gz]), "
        "a CIFAR-10 batch, or a folder.",
    )


def _resolve_dir(d: Path, target: tuple[int, ...] | None, preset: str | None) -> _Resolved:
    if (d / "data_batch_1").is_file() or (d / "test_batch").is_file():
        return _read_cifar_dir(d)
    if (d / _CIFAR_DIR).is_dir():
        return _read_cifar_dir(d / _CIFAR_DIR)
    train = _find_split_file(d, _TRAIN_IDX, ("train.npz",))
    test = _find_split_file(d, _TEST_IDX, ("test.npz", "val.npz"))
    if train is not None or test is not None:
        return _Resolved(
            d.name,
            _read_file_part(train) if train is not None else None,
            _read_file_part(test) if test is not None else None,
        )
    if (d / "MNIST" / "raw").is_dir():
        return _resolve_dir(d / "MNIST" / "raw", target, preset)
    train_dir = d / "train"
    test_dir = next((d / n for n in ("test", "val") if (d / n).is_dir()), None)
    if train_dir.is_dir() or test_dir is not None:
        return _read_image_folders(d, train_dir if train_dir.is_dir() else None, test_dir, target, preset)
    if _image_classes(d):
        return _read_image_folders(d, None, d, target, preset)
    raise StudioError(
        "This folder holds no data that can be recognised.",
        path=str(d),
        field="source",
        fix="Point to a folder with MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-…), "
        "CIFAR-10 batches (cifar-10-batches-py), train.npz/test.npz, or ImageFolder "
        "train/ and test/ (or val/) class subfolders.",
    )


def _find_split_file(d: Path, idx_names: Sequence[str], npz_names: Sequence[str]) -> Path | None:
    for stem in idx_names:
        for candidate in (d / stem, d / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return next((d / n for n in npz_names if (d / n).is_file()), None)


def _read_file_part(path: Path) -> _Raw:
    return _read_npz(path) if path.name.endswith(".npz") else _read_idx_pair(path)


def _same_data(a: _Raw, b: _Raw) -> bool:
    return Path(a.x_path).resolve() == Path(b.x_path).resolve() and a.x_field == b.x_field


# --------------------------------------------------------------------------- digits


def _load_digits() -> _Resolved:
    from sklearn.datasets import load_digits

    from core.demo import digits_split

    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None]  # (N, 1, 8, 8), values 0..16
    y = digits.target.astype(np.int64)
    train_idx, test_idx = (np.asarray(i, dtype=np.int64) for i in digits_split())
    where = "scikit-learn load_digits"
    base = _Raw(x, y, where, where, where, "images", "target")
    train = base.take(train_idx, f"{where}, training split")
    test = base.take(test_idx, f"{where}, test split")
    return _Resolved("digits", train, test)


# --------------------------------------------------------------------------- npz


def _read_npz(path: Path) -> _Raw:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise StudioError(
                    f"The .npz file has no {' or '.join(repr(k) for k in missing)} array; "
                    f"it holds {', '.join(repr(k) for k in keys) or 'no arrays'}.",
                    path=str(path),
                    field=missing[0],
                    fix="Save images as 'x' and labels as 'y': numpy.savez(path, x=images, y=labels).",
                )
            x, y = z["x"], z["y"]
            names = _npz_class_names(z, path) if "class_names" in keys else None
    except StudioError:
        raise
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise StudioError(
            f"The .npz file holds Python objects, which are not loaded for safety ({exc}).",
            path=str(path),
            field="x",
            fix="Save plain numeric arrays: numpy.savez(path, x=uint8_images, y=int64_labels).",
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise StudioError(
            f"Cannot read the .npz file: {exc}.",
            path=str(path),
            fix="Check that the file is a complete numpy .npz archive (numpy.savez).",
        ) from exc
    return _Raw(x, y, str(path), str(path), str(path), class_names=names)


def _npz_class_names(z: Any, path: Path) -> tuple[str, ...]:
    """An .npz file's optional ``class_names`` array: one string per label, in label order."""
    names = z["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise StudioError(
            f"The .npz file's 'class_names' is a {names.dtype} array of shape {tuple(names.shape)}, "
            "not a list of strings.",
            path=str(path),
            field="class_names",
            fix="Save one name per label: numpy.savez(path, x=..., y=..., class_names=numpy.array(['cat', 'dog'])).",
        )
    return tuple(str(n.decode() if isinstance(n, bytes) else n) for n in names.tolist())


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise StudioError(f"Cannot read the file: {exc}.", path=str(path), fix="Check the file is complete.") from exc
    return data


def _read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a native-endian array."""
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise StudioError(
            "Not an IDX file (bad magic number).",
            path=str(path),
            field="header",
            fix="Use the original MNIST files (e.g. t10k-images-idx3-ubyte.gz).",
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise StudioError(
            "The IDX header is truncated.", path=str(path), field="header", fix="Download the file again."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims, dtype=np.int64))
    if len(data) < header + count * dtype.itemsize:
        raise StudioError(
            f"The IDX file is truncated: its header announces {_fmt_shape(dims)} values "
            f"({header + count * dtype.itemsize:,} bytes) but it has {len(data):,} bytes.",
            path=str(path),
            field="data",
            fix="Download the file again.",
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def _idx_partner(path: Path) -> tuple[Path, Path]:
    """(images file, labels file) for either one of an IDX pair."""
    name = path.name
    if "images" in name:
        other = name.replace("images", "labels").replace("idx3", "idx1")
        images, labels = path, path.with_name(other)
    else:
        other = name.replace("labels", "images").replace("idx1", "idx3")
        images, labels = path.with_name(other), path
    for p in (images, labels):
        if not p.is_file():
            alt = p.with_name(p.name[:-3]) if p.name.endswith(".gz") else p.with_name(p.name + ".gz")
            if alt.is_file():
                if p is images:
                    images = alt
                else:
                    labels = alt
            else:
                raise StudioError(
                    f"The matching IDX file {p.name} (or {alt.name}) is missing.",
                    path=str(path),
                    field="labels" if p is labels else "images",
                    fix="Keep the images and labels IDX files together in one folder, named as in MNIST.",
                )
    return images, labels


def _idx_stem(path: Path) -> str:
    return path.name.split("-")[0]


def _read_idx_pair(path: Path) -> _Raw:
    images, labels = _idx_partner(path)
    x, y = _read_idx(images), _read_idx(labels)
    return _Raw(x, y, str(images), str(images), str(labels), "images", "labels")


# --------------------------------------------------------------------------- CIFAR-10 batches


def _numpy_core_module(sub: str):
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{sub}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; latin-1 only."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refused codec {encoding!r}")
    return text.encode("latin-1")


def _safe_globals() -> dict[tuple[str, str], object]:
    multiarray = _numpy_core_module("multiarray")
    numeric = _numpy_core_module("numeric")
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts/lists of numbers, strings and numpy arrays; refuses every other global."""

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str) -> object:
        if _NumpyOnlyUnpickler._allowed is None:
            _NumpyOnlyUnpickler._allowed = _safe_globals()
        try:
            return _NumpyOnlyUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: images (N, 3, 32, 32) uint8 and labels (N,)."""
    try:
        with open(path, "rb") as f:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # pickle raises many kinds of error on bad or hostile input
        raise StudioError(
            f"Cannot read this CIFAR-10 batch safely ({type(exc).__name__}: {exc}). Only plain numpy "
            "arrays, numbers and strings are loaded from pickled batches; nothing else is run.",
            path=str(path),
            field="pickle",
            fix="Use the original CIFAR-10 python batches (cifar-10-python.tar.gz), or convert the data "
            "to a .npz file with arrays 'x' and 'y'.",
        ) from exc
    if not isinstance(entry, dict):
        raise StudioError(
            f"A CIFAR-10 batch should hold a dict, this one holds {type(entry).__name__}.",
            path=str(path),
            field="pickle",
            fix="Use the original CIFAR-10 python batches.",
        )
    entry = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    label_key = "labels" if "labels" in entry else "fine_labels" if "fine_labels" in entry else None
    if "data" not in entry or label_key is None:
        raise StudioError(
            f"The CIFAR-10 batch has no {'data' if 'data' not in entry else 'labels'} entry; "
            f"it holds {', '.join(repr(k) for k in entry)}.",
            path=str(path),
            field="data" if "data" not in entry else "labels",
            fix="Use the original CIFAR-10 python batches.",
        )
    x = np.asarray(entry["data"])
    y = np.asarray(entry[label_key])
    if x.ndim == 2 and x.shape[1] == 3 * 32 * 32:
        x = x.reshape(-1, 3, 32, 32)
    return x, y


def _read_cifar_dir(d: Path) -> _Resolved:
    train_files = [d / n for n in _CIFAR_FILES[:5] if (d / n).is_file()]
    test_files = [d / "test_batch"] if (d / "test_batch").is_file() else []
    return _Resolved("cifar10", _read_cifar_files(d, train_files), _read_cifar_files(d, test_files))


def _read_cifar_files(d: Path, files: list[Path]) -> _Raw | None:
    """Concatenate CIFAR-10 batches into one split (None for no files)."""
    if not files:
        return None
    batches = [_read_cifar_batch(f) for f in files]
    for f, (bx, by) in zip(files, batches):
        _check_lengths(bx, by, str(f), str(f), "data", "labels")
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([np.asarray(b[1]) for b in batches])
    where = str(files[0]) if len(files) == 1 else f"{d}/{{{', '.join(f.name for f in files)}}}"
    return _Raw(x, y, where, where, where, "data", "labels", class_names=CIFAR10_CLASSES)


# --------------------------------------------------------------------------- torchvision cache


def _cached_mnist(download: bool) -> _Resolved:
    raw = dataset_cache_dir() / "MNIST" / "raw"
    missing = [n for n in _MNIST_FILES if not ((raw / n).is_file() or (raw / f"{n}.gz").is_file())]
    if missing:
        if not download:
            raise StudioError(
                f"MNIST is not in the dataset cache (missing {', '.join(missing)}).",
                path=str(raw),
                field="source",
                fix=f"Run once with internet access and --download (download=True), or put the four MNIST "
                f"files ({', '.join(_MNIST_FILES)}, .gz or not) in {raw}, or pass a folder that holds them.",
            )
        _download_mnist(raw)
    train = _read_idx_pair(_find_split_file(raw, _TRAIN_IDX[:1], ()) or raw / _TRAIN_IDX[0])
    test = _read_idx_pair(_find_split_file(raw, _TEST_IDX[:1], ()) or raw / _TEST_IDX[0])
    return _Resolved("mnist", train, test)


def _download_mnist(raw: Path) -> None:
    from torchvision.datasets import MNIST
    from torchvision.datasets import utils as tv_utils

    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in MNIST.resources:
        if (raw / filename.removesuffix(".gz")).is_file():
            continue
        errors = []
        for mirror in MNIST.mirrors:
            try:
                tv_utils.download_and_extract_archive(
                    f"{mirror}{filename}", download_root=str(raw), filename=filename, md5=md5
                )
                break
            except Exception as exc:  # network errors come in many types
                errors.append(f"{mirror}: {type(exc).__name__}: {exc}")
        else:
            raise StudioError(
                f"Could not download MNIST's {filename} ({'; '.join(errors)}).",
                path=str(raw),
                field="download",
                fix=f"Check the internet connection and try again, or copy the four MNIST files "
                f"({', '.join(_MNIST_FILES)}, .gz or not) into {raw} by hand.",
            )


def _cached_cifar10(download: bool) -> _Resolved:
    root = dataset_cache_dir()
    folder = root / _CIFAR_DIR
    missing = [n for n in _CIFAR_FILES if not (folder / n).is_file()]
    if missing:
        if not download:
            raise StudioError(
                f"CIFAR-10 is not in the dataset cache (missing {', '.join(missing)}).",
                path=str(folder),
                field="source",
                fix="Run once with internet access and --download (download=True), or extract "
                f"cifar-10-python.tar.gz so that {folder} holds data_batch_1 … data_batch_5 and test_batch, "
                "or pass a folder that holds them.",
            )
        from torchvision.datasets import CIFAR10
        from torchvision.datasets import utils as tv_utils

        root.mkdir(parents=True, exist_ok=True)
        try:
            tv_utils.download_and_extract_archive(
                CIFAR10.url, download_root=str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5
            )
        except Exception as exc:  # network errors come in many types
            raise StudioError(
                f"Could not download CIFAR-10 ({type(exc).__name__}: {exc}).",
                path=str(folder),
                field="download",
                fix=f"Check the internet connection and try again, or extract cifar-10-python.tar.gz "
                f"(from {CIFAR10.url}) so that {folder} holds data_batch_1 … data_batch_5 and test_batch.",
            ) from exc
    return _read_cifar_dir(folder)


# --------------------------------------------------------------------------- ImageFolder


def _image_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        files += [Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in _IMAGE_EXTS]
    return files


def _image_classes(folder: Path) -> dict[str, list[Path]]:
    """Class name -> image files, for class subfolders that hold images (torchvision's rule)."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _image_files(sub)
        if files:
            classes[sub.name] = files
    return classes


def _read_image_folders(
    root: Path, train_dir: Path | None, test_dir: Path | None, target: tuple[int, ...] | None, preset: str | None
) -> _Resolved:
    from PIL import Image

    train_classes = _image_classes(train_dir) if train_dir is not None else {}
    test_classes = _image_classes(test_dir) if test_dir is not None else {}
    for d, cls in ((train_dir, train_classes), (test_dir, test_classes)):
        if d is not None and not cls:
            raise StudioError(
                "This ImageFolder has no class subfolders with images.",
                path=str(d),
                field="classes",
                fix="Put the images in one subfolder per class, e.g. train/cat/001.png, train/dog/002.png.",
            )
    names = sorted(train_classes or test_classes)
    unknown = sorted(set(test_classes) - set(names))
    if unknown:
        raise StudioError(
            f"The evaluation folder has classes that the training folder lacks: {', '.join(unknown)}.",
            path=str(test_dir),
            field="classes",
            fix="Use the same class subfolders in train/ and test/ (or val/).",
        )
    if target is None:
        first = next(iter((train_classes or test_classes).values()))[0]
        with Image.open(first) as im:
            channels = 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3
            target = (channels, im.height, im.width)
    crop = preset == "imagenet"

    def read(cls: dict[str, list[Path]], folder: Path) -> _Raw:
        files = [(f, names.index(c)) for c in sorted(cls) for f in cls[c]]
        x = np.empty((len(files), *target), dtype=np.uint8)
        for i, (f, _) in enumerate(files):
            x[i] = _read_image(f, target, crop)
        y = np.array([label for _, label in files], dtype=np.int64)
        return _Raw(x, y, str(folder), str(folder), str(folder), "images", "class folders",
                    num_classes=len(names), class_names=tuple(names))

    train = read(train_classes, train_dir) if train_dir is not None else None
    test = read(test_classes, test_dir) if test_dir is not None else None
    return _Resolved(root.name, train, test)


def _read_image(path: Path, shape: tuple[int, ...], crop: bool) -> np.ndarray:
    """Decode one image to (C, H, W) uint8 at ``shape``: resized, or for ImageNet resize-and-centre-crop."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in (1, 3):
        raise StudioError(
            f"Images can be read as 1 (grey) or 3 (RGB) channels, not {channels}.",
            path=str(path),
            field="input_shape",
            fix="Use an input shape of (1, H, W) or (3, H, W).",
        )
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if crop:
                short = round(min(height, width) * 256 / 224)
                ratio = short / min(im.width, im.height)
                size = (max(width, round(im.width * ratio)), max(height, round(im.height * ratio)))
                im = im.resize(size, Image.Resampling.BILINEAR)
                left, top = (im.width - width) // 2, (im.height - height) // 2
                im = im.crop((left, top, left + width, top + height))
            elif im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise StudioError(
            f"Cannot read this image: {exc}.", path=str(path), field="image", fix="Remove or replace the file."
        ) from exc
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


# --------------------------------------------------------------------------- validation


def _check_preset_name(preset: str | None) -> None:
    if preset is not None and preset not in PRESETS:
        raise StudioError(
            f"Unknown preset {preset!r}.",
            field="preset",
            fix=f"Use one of {', '.join(PRESETS)}, or give mean and std.",
        )


def _check_limit(value: int | None, field: str) -> None:
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
        raise StudioError(
            f"{field} must be a positive whole number, not {value!r}.",
            field=field,
            fix=f"Give {field} ≥ 1 or leave it out.",
        )


def _target_shape(preset: str | None, input_shape: Sequence[int] | None) -> tuple[int, ...] | None:
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise StudioError(
                f"input_shape must be (channels, height, width), not {shape}.",
                field="input_shape",
                fix="Give three positive numbers, e.g. 1,28,28.",
            )
        return shape
    return PRESETS[preset].input_shape if preset is not None else None


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _check_lengths(x: np.ndarray, y: np.ndarray, x_path: str, y_path: str, x_field: str, y_field: str) -> None:
    if np.ndim(x) == 0 or np.ndim(y) == 0 or len(x) != len(y):
        nx = len(x) if np.ndim(x) else "no"
        ny = len(y) if np.ndim(y) else "no"
        raise StudioError(
            f"There are {nx} images ({x_field}) but {ny} labels ({y_field}).",
            path=x_path if x_path == y_path else f"{x_path} / {y_path}",
            field=y_field,
            fix="Give exactly one label per image.",
        )


def _validated(raw: _Raw, target: tuple[int, ...] | None, preset: str | None) -> _Raw:
    """Check one split before any compute; return it with x as (N, C, H, W) and y as int64."""
    x, y = raw.x, raw.y
    if x.dtype.kind not in "uif":
        raise StudioError(
            f"The images have dtype {x.dtype}, which is not numeric.",
            path=raw.x_path,
            field=raw.x_field,
            fix="Store images as numbers: uint8 pixels 0-255, or floats.",
        )
    _check_lengths(x, y, raw.x_path, raw.y_path, raw.x_field, raw.y_field)
    if len(x) == 0:
        raise StudioError(
            "The dataset is empty (0 images).", path=raw.x_path, field=raw.x_field, fix="Use a file with images in it."
        )
    x = _to_nchw(x, raw, target, preset)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
        raise StudioError(
            f"{bad} image(s) contain NaN or infinite values.",
            path=raw.x_path,
            field=raw.x_field,
            fix="Remove or repair those images.",
        )
    return replace(raw, x=x, y=_checked_labels(y, raw))


def _to_nchw(x: np.ndarray, raw: _Raw, target: tuple[int, ...] | None, preset: str | None) -> np.ndarray:
    """(N,H,W), (N,H,W,C), (N,C,H,W) or flat (N, C*H*W) with a known shape -> (N, C, H, W)."""
    where = dict(path=raw.x_path, field=raw.x_field)
    if x.ndim == 2 and target is not None and x.shape[1] == int(np.prod(target)):
        x = x.reshape(len(x), *target)
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if target is not None and x.shape[1:] in (target, (target[1], target[2], target[0])):
            hwc = x.shape[1:] != target
        else:  # channels-last if the last axis looks like channels and the second does not
            hwc = x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3)
        if hwc:
            x = x.transpose(0, 3, 1, 2)
    else:
        raise StudioError(
            f"The images array has {x.ndim} dimension(s) {tuple(x.shape)}; expected (N, H, W), "
            "(N, H, W, C) or (N, C, H, W)"
            + (f", or (N, {int(np.prod(target))}) flattened" if target is not None else "")
            + ".",
            fix="Store one image per row of the first axis, e.g. x.shape == (N, 28, 28).",
            **where,
        )
    if target is not None and x.shape[1:] != target:
        looks = preset_for_shape(x.shape[1:])
        # the target is the model's input shape when one was given, else the preset's
        from_preset = preset in PRESETS and tuple(PRESETS[preset].input_shape) == tuple(target)
        wanted = f"preset '{preset}'" if from_preset else "the model"
        raise StudioError(
            f"The images are {_fmt_shape(x.shape[1:])}"
            + (f" (the shape of '{looks}' data)" if looks else "")
            + f" but {wanted} expects {_fmt_shape(target)}.",
            fix=f"Load data that matches the model (images of {_fmt_shape(target)}),"
            " or choose the model or preset that belongs to this data"
            + (f" ('{looks}')" if looks else "")
            # torchvision networks come with the 'imagenet' preset, and many run at other sizes
            + ("." if from_preset and preset != "imagenet" else
               "; a network that takes other image sizes (e.g. a torchvision"
               " ResNet) needs its input shape (CLI: --input-shape C,H,W)."),
            **where,
        )
    return x


def _checked_labels(y: np.ndarray, raw: _Raw) -> np.ndarray:
    where = dict(path=raw.y_path, field=raw.y_field)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise StudioError(
            f"The labels have shape {tuple(y.shape)}; expected one class index per image, shape (N,).",
            fix="Store labels as class indices (e.g. y = onehot.argmax(1)).",
            **where,
        )
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f":
            sample = next((v for v in y.tolist() if not float(v).is_integer()), y.flat[0])
        else:
            sample = y.flat[0]
        raise StudioError(
            f"The labels are not whole numbers (dtype {y.dtype}, e.g. {sample!r}).",
            fix="Store labels as integer class indices 0 .. classes-1.",
            **where,
        )
    y = y.astype(np.int64)
    if y.min() < 0:
        raise StudioError(
            f"There are negative labels (smallest {int(y.min())}).",
            fix="Labels must be class indices 0 .. classes-1.",
            **where,
        )
    return y


def _normalization(
    preset: str | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    shape: tuple[int, ...],
    raw: _Raw,
) -> tuple[str | None, Normalization]:
    """The preset name and normalisation for data of ``shape`` (explicit, or by shape)."""
    name = preset if preset is not None else (preset_for_shape(shape) if mean is None or std is None else None)
    base = PRESETS.get(name) if name is not None else None
    if base is None and (mean is None or std is None):
        raise StudioError(
            f"Cannot tell how to normalise {_fmt_shape(shape)} images: no preset matches that shape.",
            path=raw.x_path,
            field="preset",
            fix=f"Give a preset ({', '.join(PRESETS)}) or both mean and std (e.g. --mean 0.5 --std 0.5).",
        )
    mean_t = tuple(float(v) for v in mean) if mean is not None else base.mean
    std_t = tuple(float(v) for v in std) if std is not None else base.std
    for field, values in (("mean", mean_t), ("std", std_t)):
        if len(values) not in (1, shape[0]):
            raise StudioError(
                f"{field} has {len(values)} values but the images have {shape[0]} channel(s).",
                field=field,
                fix=f"Give one {field} value, or one per channel.",
            )
    if any(not s > 0 for s in std_t):
        raise StudioError(f"std must be positive, not {std_t}.", field="std", fix="Give positive std values.")
    scale = base.scale if base is not None else (255.0 if raw.x.dtype.kind in "iu" else 1.0)
    classes = base.num_classes if base is not None else None
    return name, Normalization(mean_t, std_t, scale, shape, classes)


def _num_classes(norm: Normalization, preset: str | None, *raws: _Raw) -> int:
    """Class count for the bundle; labels beyond the preset's classes are an error."""
    known = next((r.num_classes for r in raws if r.num_classes is not None), None)
    limit = known if known is not None else norm.num_classes
    for raw in raws:
        top = int(raw.y.max())
        if limit is not None and top >= limit:
            whose = f"preset '{preset}' models have" if known is None else "the source has"
            raise StudioError(
                f"Labels go up to {top} but {whose} {limit} classes (labels 0 to {limit - 1}).",
                path=raw.y_path,
                field=raw.y_field,
                fix="Use labels that are class indices of the model, or the preset that belongs to this data.",
            )
    return limit if limit is not None else max(int(r.y.max()) for r in raws) + 1


def _check_values(raw: _Raw, norm: Normalization, preset: str | None) -> None:
    """Raw pixel values must lie in [0, scale]: catches already-normalised or mis-scaled data."""
    lo, hi = float(raw.x.min()), float(raw.x.max())
    if lo < 0 or hi > norm.scale * (1 + 1e-6):
        how = f"preset '{preset}'" if preset is not None else "this normalisation"
        raise StudioError(
            f"Pixel values range from {lo:g} to {hi:g}, but {how} expects raw values from 0 to {norm.scale:g}"
            + (" (the data looks already normalised)." if lo < 0 else "."),
            path=raw.x_path,
            field=raw.x_field,
            fix=f"Store raw pixels (0 to {norm.scale:g}); normalisation is applied when loading.",
        )


# --------------------------------------------------------------------------- splitting, output


def _split(whole: _Raw, rng: np.random.Generator, seed: int) -> tuple[_Raw, _Raw]:
    """Disjoint calibration/evaluation parts of one split by a seeded permutation."""
    n = len(whole)
    if n < 2:
        raise StudioError(
            "One image cannot be split into calibration and evaluation parts.",
            path=whole.x_path,
            field=whole.x_field,
            fix="Use more images, or give a separate evaluation source.",
        )
    n_eval = min(n - 1, max(1, round(n * _SINGLE_FILE_EVAL_FRACTION)))
    perm = rng.permutation(n)
    eval_idx, cal_idx = np.sort(perm[:n_eval]), perm[n_eval:]
    note = f"seeded split (seed {seed}) of {n:,} images"
    cal = whole.take(cal_idx, f"{whole.description}, {note}: calibration part of {n - n_eval:,}")
    ev = whole.take(eval_idx, f"{whole.description}, {note}: evaluation part of {n_eval:,}")
    return cal, ev


def _to_imageset(raw: _Raw, norm: Normalization) -> ImageSet:
    return ImageSet(
        x=norm.apply(raw.x),
        y=torch.from_numpy(np.ascontiguousarray(raw.y, dtype=np.int64)),
        source=raw.description,
        indices=torch.from_numpy(np.ascontiguousarray(raw.rows(), dtype=np.int64)),
        class_names=raw.class_names,
    )


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return values * channels if len(values) == 1 else values
