"""Which evaluation images pruning changed: the ones a pruned model lost and the ones it gained.

A change of −3 points on 846 images is a count of images: those the reference (the dense model,
or magnitude at the same sparsity) classifies right and the pruned model wrong (*lost*), less
those it gets right where the reference did not (*gained*); only these discordant images carry
the paired difference (:class:`core.evaluate.PairedDifference`'s ``b_only`` and ``a_only``). Here
they are listed with their true class and both models' predictions, turned back into pixels a
person can look at (:func:`display_pixels`), and laid out as a contact sheet PNG for the CLI
(:func:`write_contact_sheet`). The app shows the same images under its Classes tab.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from core.data import class_name
from core.errors import StudioError
from core.evaluate import EvalResult

Kind = Literal["lost", "gained"]
KINDS: tuple[Kind, ...] = ("lost", "gained")


@dataclass(frozen=True)
class ChangedImage:
    """One evaluation image whose verdict changed: its position ``index`` in the image set, its
    true ``label``, the pruned model's ``prediction`` and the reference's
    (``reference_prediction``, −1 where the reference's predictions are not known)."""

    index: int
    label: int
    prediction: int
    reference_prediction: int


def changed_images(result: EvalResult, reference: EvalResult, labels: torch.Tensor, *,
                   kind: Kind = "lost", label: int | None = None) -> tuple[ChangedImage, ...]:
    """The images ``result`` lost against ``reference`` (right there, wrong here) or, with
    ``kind="gained"``, the ones it gained; only class ``label``'s where given; by true class,
    then in the image set's order. Both results must be scored on the same images (``labels``,
    in their order) with per-image hits, and ``result`` with its predictions
    (:func:`core.evaluate.evaluate` keeps them).
    """
    if kind not in KINDS:
        raise ValueError(f"kind is 'lost' or 'gained', not {kind!r}")
    if result.hits is None or result.predictions is None:
        raise ValueError("the result needs per-image hits and predictions (scored by core.evaluate.evaluate)")
    if reference.hits is None or reference.hits.shape != result.hits.shape:
        raise ValueError("the reference was not scored on the same images")
    y = labels.reshape(-1).long()
    if y.numel() != result.hits.numel():
        raise ValueError(f"{y.numel()} labels for {result.hits.numel()} scored images")
    hits, ref = result.hits.bool().reshape(-1), reference.hits.bool().reshape(-1)
    flags = (ref & ~hits) if kind == "lost" else (hits & ~ref)
    if label is not None:
        flags &= y == int(label)
    idx = flags.nonzero().reshape(-1)
    pred = result.predictions.reshape(-1).long()
    ref_pred = (reference.predictions.reshape(-1).long()
                if reference.predictions is not None and reference.predictions.numel() == y.numel()
                else None)
    out = []
    for i in sorted(idx.tolist(), key=lambda i: (int(y[i]), i)):
        r = int(ref_pred[i]) if ref_pred is not None else (int(y[i]) if kind == "lost" else -1)
        out.append(ChangedImage(i, int(y[i]), int(pred[i]), r))
    return tuple(out)


SHEET_LIMIT = 200  # images a contact sheet (and the app's strip) draws at most


def share_by_class(changed: Sequence[ChangedImage], limit: int = SHEET_LIMIT) -> tuple[ChangedImage, ...]:
    """At most ``limit`` of ``changed``, every class with its share: the first image of each
    class, then the second of each, and so on (each class's in the image set's order), listed
    by class. All of them where there are no more than ``limit``."""
    if len(changed) <= limit:
        return tuple(changed)
    by_class: dict[int, list[ChangedImage]] = {}
    for c in changed:
        by_class.setdefault(c.label, []).append(c)
    picked: list[ChangedImage] = []
    depth = 0
    while len(picked) < limit:
        row = [imgs[depth] for imgs in by_class.values() if depth < len(imgs)]
        picked += row[:limit - len(picked)]
        depth += 1
    return tuple(sorted(picked, key=lambda c: (c.label, c.index)))


def display_pixels(x: torch.Tensor, normalization: object | None = None, *,
                   max_size: int | None = None) -> np.ndarray:
    """Model inputs ``x`` (N, C, H, W) back as pictures: uint8 (N, H, W, 3).

    With the data's :class:`core.data.Normalization` the inputs are de-normalised to the
    [0, 1] range their pixels had (``x·std + mean``); where that does not land in [0, 1] (no
    normalisation known, or pixels stored in other units) an image is stretched from its own
    minimum to its maximum. One channel is grey; three are RGB; of other counts the first is
    shown. ``max_size`` shrinks larger pictures (area averaging) to at most that many pixels a
    side first, for thumbnails.
    """
    if x.dim() != 4:
        raise ValueError(f"images are (N, C, H, W), not {tuple(x.shape)}")
    x = x.detach().to(torch.float32)
    c = x.shape[1]
    if normalization is not None:
        x = normalization.invert(x)
    x = x[:, :3] if c == 3 else x[:, :1]
    if max_size is not None and max(x.shape[2:]) > max_size:
        scale = max_size / max(x.shape[2:])
        size = (max(1, round(x.shape[2] * scale)), max(1, round(x.shape[3] * scale)))
        x = torch.nn.functional.interpolate(x, size=size, mode="area")
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    stretch = (lo < -0.05) | (hi > 1.05)  # out of range: each such image on its own scale
    if normalization is None:
        stretch = torch.ones_like(stretch)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    x = torch.where(stretch, torch.where(hi > lo, (x - lo) / span, torch.zeros_like(x)), x)
    pixels = (x.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def guesses(result: EvalResult, index: int, names: Sequence[str] | None = None) -> tuple[tuple[str, float], ...]:
    """Image ``index``'s most probable classes for ``result`` with their probabilities, most
    probable first: (('frog', 0.61), ('bird', 0.20), ('cat', 0.09)); () where the result does
    not keep them (scored before they were kept)."""
    top, prob = result.top_classes, result.top_probabilities
    if top is None or prob is None or not 0 <= index < top.shape[0]:
        return ()
    return tuple((class_name(int(c), names), float(p)) for c, p in zip(top[index].tolist(), prob[index].tolist()))


def guesses_text(result: EvalResult, index: int, names: Sequence[str] | None = None) -> str:
    """'frog 61%, bird 20%, cat 9%' ('' where not kept)."""
    return ", ".join(f"{name} {100 * p:.0f}%" for name, p in guesses(result, index, names))


def second_line(image: ChangedImage, names: Sequence[str] | None = None) -> str:
    """A changed image's second caption line: "as frog" where the run now gets it wrong (lost),
    "was frog" where it gets it right and the reference said frog (gained)."""
    if image.prediction != image.label:
        return f"as {class_name(image.prediction, names)}"
    was = image.reference_prediction
    return f"was {class_name(was, names)}" if was >= 0 else "was wrong"


def contact_sheet(pixels: np.ndarray, captions: Sequence[tuple[str, str]], *, title: str = "",
                  columns: int = 10, tile: int = 64):
    """A Pillow image of ``pixels`` (N, H, W, 3 uint8) in rows of ``columns``, each scaled to
    ``tile`` pixels (nearest neighbour for small images: their pixels stay sharp) with its two
    caption lines below (the true class, then the second line in red, :func:`second_line`), and
    ``title`` above."""
    from PIL import Image, ImageDraw

    from core.plotting import pillow_font

    n = len(pixels)
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    pad, line_h = 10, 13
    width = max(pad + cols * (tile + pad), 420)
    title_font = pillow_font(14)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_lines: list[str] = []
    for word in title.split():  # wrapped to the sheet's width
        if title_lines and measure.textlength(f"{title_lines[-1]} {word}", font=title_font) <= width - 2 * pad:
            title_lines[-1] += f" {word}"
        else:
            title_lines.append(word)
    head = 12 + 18 * len(title_lines) if title_lines else 6
    height = head + rows * (tile + 2 * line_h + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = pillow_font(11)
    for i, line in enumerate(title_lines):
        draw.text((pad, 8 + 18 * i), line, fill="black", font=title_font)

    def fit(text: str) -> str:
        while len(text) > 2 and draw.textlength(text, font=font) > tile + pad - 2:
            text = text[:-3] + ".."  # Pillow's default font has no ellipsis
        return text

    for i, (img, (true, second)) in enumerate(zip(pixels, captions)):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (tile + pad), head + r * (tile + 2 * line_h + pad)
        small = img.shape[0] <= tile and img.shape[1] <= tile
        pic = Image.fromarray(img).resize((tile, tile), Image.Resampling.NEAREST if small
                                          else Image.Resampling.BILINEAR)
        sheet.paste(pic, (x0, y0))
        draw.text((x0 + tile / 2, y0 + tile + 2), fit(true), fill="black", font=font, anchor="ma")
        draw.text((x0 + tile / 2, y0 + tile + 2 + line_h), fit(second), fill="#c62828", font=font,
                  anchor="ma")
    return sheet


def contact_sheet_png(images: object, changed: Sequence[ChangedImage], *, normalization: object | None = None,
                      title: str = "", limit: int = SHEET_LIMIT) -> tuple[bytes, int]:
    """``changed`` (from ``images``, an ImageSet) as a PNG contact sheet: at most ``limit``, each
    class with its share (:func:`share_by_class`). Returns the PNG's bytes and how many images
    it shows."""
    shown = share_by_class(changed, max(0, limit))
    names = getattr(images, "class_names", None)
    if shown:
        pixels = display_pixels(images.x[torch.tensor([c.index for c in shown])], normalization)
    else:
        pixels = np.zeros((0, 1, 1, 3), dtype=np.uint8)
    title = title or f"{len(changed)} images"
    if len(shown) < len(changed):
        title += f"; {len(shown)} drawn, each class with its share"
    # Pillow's default font draws a space 2 pixels wide at this size: "as  truck" takes two
    sheet = contact_sheet(pixels, [(class_name(c.label, names), second_line(c, names).replace(" ", "  "))
                                   for c in shown],
                          title=title, columns=10)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue(), len(shown)


def write_contact_sheet(path: str | Path, images: object, changed: Sequence[ChangedImage], *,
                        normalization: object | None = None, title: str = "", limit: int = SHEET_LIMIT,
                        field: str | None = None) -> int:
    """Write :func:`contact_sheet_png` at ``path``, atomically; returns how many images it shows.
    The suffix must be .png."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise StudioError(f"a contact sheet is a PNG file, not {path.suffix or 'a file without extension'}",
                          path=str(path), field=field, fix="give a file name ending in .png.")
    data, shown = contact_sheet_png(images, changed, normalization=normalization, title=title, limit=limit)
    from core.atomic_file import write_atomic

    write_atomic(path, data, field=field)
    return shown
