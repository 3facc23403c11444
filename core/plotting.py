"""Headless sweep plots (PNG via Pillow, SVG by hand): accuracy against sparsity with 95% bands.

The GUI draws the same picture with pyqtgraph; this writer serves the CLI (``sweep --plot``)
without Qt.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import StudioError

if TYPE_CHECKING:
    from core.sweep import SweepResult

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
W, H, L, R, T, B = 900, 560, 80, 220, 50, 70  # canvas and margins


def _series(result: "SweepResult") -> list[tuple[str, list[tuple[float, float, float, float]]]]:
    from core.pruning import METHOD_LABELS

    out = []
    for m in dict.fromkeys(r.method for r in result.rows):
        pts = [(r.sparsity, r.eval.accuracy, *r.eval.accuracy_ci) for r in result.series(m)]
        out.append((METHOD_LABELS.get(m, m), pts))
    return out


def _scales(result: "SweepResult"):
    """Axis ranges widened to round tick values, their ticks, and the data → pixel maps."""
    xs = [r.sparsity for r in result.rows] or [0.0, 1.0]
    ys = [v for r in result.rows for v in r.eval.accuracy_ci] + [result.dense.accuracy]
    xt = nice_ticks(min(xs), max(xs), lo_limit=0.0, hi_limit=1.0)
    yt = nice_ticks(max(0.0, min(ys) - 0.01), min(1.0, max(ys) + 0.01), lo_limit=0.0, hi_limit=1.0)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def sx(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def sy(y: float) -> float:
        return H - B - (y - y0) / (y1 - y0) * (H - T - B)

    return (xt, yt), sx, sy


def nice_ticks(lo: float, hi: float, *, target: int = 6, lo_limit: float = float("-inf"),
               hi_limit: float = float("inf")) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10^k) from at or below ``lo`` to at or above
    ``hi``, about ``target`` of them, kept within [``lo_limit``, ``hi_limit``]; the first and last
    tick are the axis ends. A single value gets a small range around it."""
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    raw = (hi - lo) / max(1, target - 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = max(math.floor(lo / step + 1e-9) * step, lo_limit)
    last = min(math.ceil(hi / step - 1e-9) * step, hi_limit)
    count = int(round((last - first) / step))
    ticks = [round(first + i * step, 10) for i in range(count + 1)]
    if ticks[-1] < last - 1e-9:  # a limit that is not a multiple of the step ends the axis
        ticks.append(last)
    return ticks


def _label(v: float, ticks: list[float]) -> str:
    """A tick's percentage with as many decimals as the step needs."""
    step = min(b - a for a, b in zip(ticks, ticks[1:])) if len(ticks) > 1 else 1.0
    decimals = 0 if step * 100 >= 1 - 1e-9 else (1 if step * 1000 >= 1 - 1e-9 else 2)
    return f"{100 * v:.{decimals}f}%"


def pillow_font(size: int):
    """Pillow's scalable default font at ``size`` pixels (its small bitmap font without FreeType)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def write_sweep_plot(result: "SweepResult", path: str | Path, title: str = "") -> None:
    """Write the sweep plot; the format follows the extension (.png or .svg)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise StudioError(f"cannot write a plot as {suffix or 'a file without extension'}",
                          path=str(path), field="--plot", fix="name the file .png or .svg.")
    if len({r.sparsity for r in result.rows}) == 1:  # one sparsity (an N:M pattern's): methods side by side
        _write_method_plot(result, path, suffix, title)
        return
    (xt, yt), sx, sy = _scales(result)
    series = _series(result)
    title = title or "Accuracy against sparsity (95% interval bands)"
    if suffix == ".svg":
        parts = _svg_head(title, yt, sy, sy(result.dense.accuracy))
        for t in xt:
            parts.append(f'<line x1="{sx(t):.1f}" y1="{T}" x2="{sx(t):.1f}" y2="{H - B}" stroke="#ddd"/>'
                         f'<text x="{sx(t):.1f}" y="{H - B + 20}" text-anchor="middle">{_label(t, xt)}</text>')
        parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 20}" text-anchor="middle">sparsity</text>')
        for i, (label, pts) in enumerate(series):
            c = COLORS[i % len(COLORS)]
            band = [(sx(x), sy(hi)) for x, _, _, hi in pts] + [(sx(x), sy(lo)) for x, _, lo, _ in reversed(pts)]
            parts.append('<polygon points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in band)
                         + f'" fill="{c}" fill-opacity="0.18" stroke="none"/>')
            parts.append('<polyline points="' + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _, _ in pts)
                         + f'" fill="none" stroke="{c}" stroke-width="2.5"/>')
            for x, y, _, _ in pts:
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{c}"/>')
            parts.append(f'<rect x="{W - R + 15}" y="{T + 24 * i}" width="14" height="14" fill="{c}"/>'
                         f'<text x="{W - R + 36}" y="{T + 24 * i + 12}">{label}</text>')
        n = len(series)
        parts.append(f'<text x="{W - R + 15}" y="{T + 24 * n + 12}">- - dense</text>')
        parts.append("</svg>")
        _atomic_write(path, "\n".join(parts).encode())
        return
    img, d, font = _png_canvas(title, yt, sy, sy(result.dense.accuracy), 14)
    for t in xt:
        d.line([(sx(t), T), (sx(t), H - B)], fill="#dddddd")
        d.text((sx(t), H - B + 8), _label(t, xt), fill="black", font=font, anchor="ma")
    d.text(((L + W - R) / 2, H - 22), "sparsity", fill="black", font=font, anchor="ms")
    for i, (label, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        rgb = tuple(int(c[j:j + 2], 16) for j in (1, 3, 5))
        band = [(sx(x), sy(hi)) for x, _, _, hi in pts] + [(sx(x), sy(lo)) for x, _, lo, _ in reversed(pts)]
        if len(band) >= 3:
            d.polygon(band, fill=rgb + (46,))
        d.line([(sx(x), sy(y)) for x, y, _, _ in pts], fill=rgb, width=3)
        for x, y, _, _ in pts:
            d.ellipse([sx(x) - 4, sy(y) - 4, sx(x) + 4, sy(y) + 4], fill=rgb)
        d.rectangle([W - R + 15, T + 24 * i, W - R + 29, T + 24 * i + 14], fill=rgb)
        d.text((W - R + 36, T + 24 * i + 7), label, fill="black", font=font, anchor="lm")
    d.text((W - R + 15, T + 24 * len(series) + 7), "- - dense", fill="black", font=font, anchor="lm")
    _write_png(img, path)


def _write_method_plot(result: "SweepResult", path: Path, suffix: str, title: str) -> None:
    """A sweep at one sparsity: each method's accuracy with its 95% interval as an error bar,
    the methods along x (the title names the sparsity, and the pattern if the sweep had one)."""
    (_, yt), _, sy = _scales(result)
    series = _series(result)
    sparsity = result.rows[0].sparsity
    pattern = result.meta.get("pattern") if isinstance(result.meta, dict) else None
    at = f"the {pattern} pattern ({100 * sparsity:.0f}%)" if pattern else f"{100 * sparsity:.0f}% sparsity"
    title = f"{(title or 'Accuracy').replace(' against sparsity', '')} by method at {at} (95% intervals)"
    step = (W - L - R) / max(1, len(series))

    def sx(i: int) -> float:
        return L + step * (i + 0.5)

    if suffix == ".svg":
        parts = _svg_head(title, yt, sy, sy(result.dense.accuracy))
        parts.append(f'<text x="{W - R + 15}" y="{sy(result.dense.accuracy) + 5:.1f}">- - dense</text>')
        for i, (label, pts) in enumerate(series):
            c, (_, y, lo, hi) = COLORS[i % len(COLORS)], pts[0]
            x = sx(i)
            parts.append(f'<line x1="{x:.1f}" y1="{sy(lo):.1f}" x2="{x:.1f}" y2="{sy(hi):.1f}" stroke="{c}" '
                         f'stroke-width="2.5"/>'
                         + "".join(f'<line x1="{x - 10:.1f}" y1="{sy(v):.1f}" x2="{x + 10:.1f}" y2="{sy(v):.1f}" '
                                   f'stroke="{c}" stroke-width="2.5"/>' for v in (lo, hi))
                         + f'<circle cx="{x:.1f}" cy="{sy(y):.1f}" r="5" fill="{c}"/>'
                         f'<text x="{x:.1f}" y="{H - B + 20}" text-anchor="middle">{label}</text>')
        parts.append("</svg>")
        _atomic_write(path, "\n".join(parts).encode())
        return
    yd = sy(result.dense.accuracy)
    img, d, font = _png_canvas(title, yt, sy, yd, 13)
    d.text((W - R + 15, yd), "- - dense", fill="black", font=font, anchor="lm")
    for i, (label, pts) in enumerate(series):
        c, (_, y, lo, hi) = COLORS[i % len(COLORS)], pts[0]
        rgb = tuple(int(c[j:j + 2], 16) for j in (1, 3, 5))
        x = sx(i)
        d.line([(x, sy(lo)), (x, sy(hi))], fill=rgb, width=3)
        for v in (lo, hi):
            d.line([(x - 10, sy(v)), (x + 10, sy(v))], fill=rgb, width=3)
        d.ellipse([x - 5, sy(y) - 5, x + 5, sy(y) + 5], fill=rgb)
        d.text((x, H - B + 8), label.split(" (")[0], fill="black", font=font, anchor="ma")
    _write_png(img, path)


def _svg_head(title: str, yt: list[float], sy, y_dense: float) -> list[str]:
    """The SVG's opening, title, accuracy axis (grid and labels) and dense line (dashed)."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'font-family="sans-serif" font-size="14">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{L}" y="30" font-size="18">{title}</text>']
    for t in yt:
        parts.append(f'<line x1="{L}" y1="{sy(t):.1f}" x2="{W - R}" y2="{sy(t):.1f}" stroke="#ddd"/>'
                     f'<text x="{L - 8}" y="{sy(t) + 5:.1f}" text-anchor="end">{_label(t, yt)}</text>')
    parts.append(f'<line x1="{L}" y1="{y_dense:.1f}" x2="{W - R}" y2="{y_dense:.1f}" stroke="#555" '
                 'stroke-dasharray="6,4"/>')
    return parts


def _png_canvas(title: str, yt: list[float], sy, y_dense: float, size: int):
    """A white canvas with the title, the accuracy axis's grid and labels and the dense line
    (dashed): (image, its drawing context, the labels' font)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img, "RGBA")
    font = pillow_font(size)
    d.text((L, 16), title, fill="black", font=pillow_font(17))
    for t in yt:
        d.line([(L, sy(t)), (W - R, sy(t))], fill="#dddddd")
        d.text((L - 8, sy(t)), _label(t, yt), fill="black", font=font, anchor="rm")
    for xa in range(L, W - R, 12):
        d.line([(xa, y_dense), (min(xa + 6, W - R), y_dense)], fill="#555555", width=1)
    return img, d, font


def _write_png(img, path: Path) -> None:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    _atomic_write(path, buf.getvalue())


def _atomic_write(path: Path, data: bytes) -> None:
    from core.atomic_file import write_atomic

    write_atomic(path, data, field="--plot")
