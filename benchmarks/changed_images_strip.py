"""How long the Classes tab's strip of lost images takes to draw, against the first version.

The strip (gui/changed_images_view.py) draws up to 200 thumbnails every time the shown run or the
live preview changes and the tab is seen. The baseline is its first version, kept below: pixels
de-normalised at full size with a Python loop over the images, then scaled by Qt. The current
path shrinks the images first (area averaging, ``display_pixels(max_size=2 * ICON)``), stretches
all of them at once, and fills the list with updates off. Random images, 200 lost of 600, three
image sizes: the digits' 8×8, CIFAR-10's 32×32 and ImageNet's 224×224, the last also without
its normalisation (as `compare --lost-images` draws files' images: each stretched on its own).

    QT_QPA_PLATFORM=offscreen python benchmarks/changed_images_strip.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402,F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import ImageSet, Normalization  # noqa: E402
from core.evaluate import EvalResult  # noqa: E402


def first_display_pixels(x: torch.Tensor, normalization: Normalization | None) -> np.ndarray:
    """The first version of core.changed_images.display_pixels (the baseline): full size, and a
    Python loop that stretches out-of-range images one at a time."""
    x = x.detach().to(torch.float32)
    c = x.shape[1]
    if normalization is not None:
        x = normalization.invert(x)
    x = x[:, :3] if c == 3 else x[:, :1].expand(-1, 3, -1, -1)
    x = x.clone()
    for i in range(x.shape[0]):
        img = x[i]
        if normalization is None or float(img.min()) < -0.05 or float(img.max()) > 1.05:
            lo, hi = float(img.min()), float(img.max())
            x[i] = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    pixels = (x.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from core.changed_images import changed_images, display_pixels, share_by_class
    from gui.changed_images_view import ICON, LIMIT, ChangedImagesView, pixmap_of

    print(f"{LIMIT} thumbnails of {ICON} px, median of {args.rounds} rounds (ms)\n")
    print("| images | first version: pixels + pixmaps (baseline) | current: pixels + pixmaps | ratio | "
          "current: whole strip drawn |")
    print("| --- | --- | --- | --- | --- |")
    gen = torch.Generator().manual_seed(0)
    for size, channels, known in ((8, 1, True), (32, 3, True), (224, 3, True), (224, 3, False)):
        n = 600
        given = Normalization((0.5,) * channels, (0.25,) * channels, 255.0)
        norm = given if known else None  # unknown (compare's files): every image stretched on its own
        raw = torch.randint(0, 256, (n, channels, size, size), generator=gen).numpy().astype(np.uint8)
        images = ImageSet(given.apply(raw), torch.randint(0, 10, (n,), generator=gen), "random")
        hits = torch.arange(n) % 3 != 0  # every third image lost
        dense = EvalResult(1.0, (1.0, 1.0), 0.0, (0.0, 0.0), n, n, 0.0, torch.ones(n, dtype=torch.bool),
                           images.y.int())
        pruned = EvalResult(0.0, (0.0, 0.0), 0.0, (0.0, 0.0), n, 0, 0.0, hits, ((images.y + 1) % 10).int())
        shown = share_by_class(changed_images(pruned, dense, images.y), LIMIT)
        x = images.x[torch.tensor([c.index for c in shown])]
        timings: dict[str, list[float]] = {"first": [], "now": [], "strip": []}
        view = ChangedImagesView()
        view.show()
        for _ in range(args.rounds):  # alternating, so that a slow stretch of the machine hits both
            t = time.perf_counter()
            [pixmap_of(p) for p in first_display_pixels(x, norm)]
            timings["first"].append(time.perf_counter() - t)
            t = time.perf_counter()
            [pixmap_of(p) for p in display_pixels(x, norm, max_size=2 * ICON)]
            timings["now"].append(time.perf_counter() - t)
            t = time.perf_counter()
            view.set_data(pruned, dense, images, norm)
            app.processEvents()
            timings["strip"].append(time.perf_counter() - t)
        assert view.grid.count() == len(shown)
        med = {k: 1000 * statistics.median(v) for k, v in timings.items()}
        print(f"| {len(shown)} × {channels}×{size}×{size}{'' if known else ', normalisation unknown'} | {med['first']:.1f} | {med['now']:.1f} | "
              f"{med['now'] / med['first']:.2f}× | {med['strip']:.1f} |")
        view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
