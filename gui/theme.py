"""Light and dark themes, presentation-mode font scaling, and matching pyqtgraph colours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
BASE_POINT_SIZE = 10.0
PRESENTATION_SCALE = 1.4
# presentation mode's font scales, largest first: the first at which the window fits the screen
# is used (a 1024×768 projector needs the smallest; its pixels are 1.25× larger on the wall than a
# 1280-pixel one's at the same picture width, so 1.05× there is about 1.3× at 1280)
PRESENTATION_SCALES = (PRESENTATION_SCALE, 1.3, 1.2, 1.1, 1.05, 1.0)

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)


@dataclass(frozen=True)
class Palette:
    """Named colours of one theme (hex strings)."""

    name: str
    bg: str
    panel: str
    input: str
    button: str
    fg: str
    muted: str
    border: str
    alt_row: str
    accent: str
    accent_hover: str
    on_accent: str
    compare: str  # second series (magnitude baseline)
    good: str
    bad: str
    banner_bg: str
    dense: str  # unpruned / all-weights series
    pruned: str
    colormap: str


LIGHT = Palette(
    name="light", bg="#f3f5f8", panel="#ffffff", input="#ffffff", button="#f7f8fa", fg="#1b2130",
    muted="#5d6678", border="#d3d8e0", alt_row="#f6f8fb", accent="#2f6fde", accent_hover="#2459b8",
    on_accent="#ffffff", compare="#e8590c", good="#2b8a3e", bad="#c92a2a", banner_bg="#eaf1fd",
    dense="#9aa4b5", pruned="#d9480f", colormap="viridis",
)
DARK = Palette(
    name="dark", bg="#14171d", panel="#1d2129", input="#232833", button="#262b36", fg="#e7eaf0",
    muted="#9aa3b3", border="#343b49", alt_row="#21262f", accent="#5b9cff", accent_hover="#7db1ff",
    on_accent="#0d1117", compare="#ff922b", good="#51cf66", bad="#ff6b6b", banner_bg="#1c2738",
    dense="#69758a", pruned="#ff8a3d", colormap="inferno",
)
THEMES: dict[str, Palette] = {"light": LIGHT, "dark": DARK}


@dataclass(frozen=True)
class Theme:
    """A palette plus a font scale (1.0 normal, up to 1.4 in presentation mode)."""

    palette: Palette
    scale: float = 1.0
    presentation: bool = False

    @property
    def point_size(self) -> float:
        """Base font size in points."""
        return BASE_POINT_SIZE * self.scale

    def font(self, factor: float = 1.0, bold: bool = False) -> QFont:
        """A font at ``factor`` × the base size."""
        f = QFont(QApplication.font())
        f.setPointSizeF(self.point_size * factor)
        f.setBold(bold)
        return f

    def qcolor(self, name: str, alpha: int = 255) -> QColor:
        """A palette colour as a QColor with ``alpha``."""
        c = QColor(getattr(self.palette, name))
        c.setAlpha(alpha)
        return c


def make_theme(name: str, presentation: bool = False, scale: float = PRESENTATION_SCALE) -> Theme:
    """The theme named ``name`` ("light"/"dark"), scaled up by ``scale`` in presentation mode."""
    return Theme(THEMES.get(name, LIGHT), scale if presentation else 1.0, presentation)


def style_sheet(theme: Theme) -> str:
    """Fill the QSS template in resources/ with the theme's colours and sizes."""
    template = Template((RESOURCES / "studio.qss").read_text(encoding="utf-8"))
    values = dict(vars(theme.palette))
    values.update(
        font_pt=f"{theme.point_size:.1f}",
        headline_pt=f"{theme.point_size * 1.25:.1f}",
        big_pt=f"{theme.point_size * 2.0:.1f}",
        resources=RESOURCES.as_posix(),
    )
    return template.safe_substitute(values)


def apply_theme(app: QApplication, theme: Theme) -> None:
    """Apply palette, font and style sheet to the whole application."""
    p = theme.palette
    app.setStyle("Fusion")
    pal = QPalette()
    pal.setColor(QPalette.ColorRole.Window, QColor(p.bg))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(p.fg))
    pal.setColor(QPalette.ColorRole.Base, QColor(p.panel))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor(p.alt_row))
    pal.setColor(QPalette.ColorRole.Text, QColor(p.fg))
    pal.setColor(QPalette.ColorRole.Button, QColor(p.button))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor(p.fg))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(p.accent))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor(p.on_accent))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(p.panel))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor(p.fg))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(p.muted))
    pal.setColor(QPalette.ColorRole.Link, QColor(p.accent))  # links in labels (default blue: unreadable on dark)
    pal.setColor(QPalette.ColorRole.LinkVisited, QColor(p.accent))
    for group in (QPalette.ColorGroup.Disabled,):
        pal.setColor(group, QPalette.ColorRole.Text, QColor(p.muted))
        pal.setColor(group, QPalette.ColorRole.WindowText, QColor(p.muted))
        pal.setColor(group, QPalette.ColorRole.ButtonText, QColor(p.muted))
    app.setPalette(pal)
    font = QFont(app.font())
    font.setPointSizeF(theme.point_size)
    app.setFont(font)
    app.setStyleSheet(style_sheet(theme))
    pg.setConfigOptions(background=p.panel, foreground=p.fg)


def style_plot(plot: pg.PlotWidget, theme: Theme) -> None:
    """Give an existing pyqtgraph plot the theme's background, axis colours and fonts."""
    p = theme.palette
    plot.setBackground(p.panel)
    item = plot.getPlotItem()
    tick_font = theme.font(0.9)
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(p.border))
        axis.setTextPen(pg.mkPen(p.muted))
        axis.setStyle(tickFont=tick_font)
        label_text = axis.labelText
        if label_text:
            axis.setLabel(label_text, units=axis.labelUnits or None,
                          **{"color": p.muted, "font-size": f"{theme.point_size * 0.95:.1f}pt"})
    title = item.titleLabel.text
    if title:
        item.setTitle(title, color=p.fg, size=f"{theme.point_size * 1.05:.1f}pt")
    legend = item.legend
    if legend is not None:
        legend.setLabelTextColor(p.fg)
        legend.setLabelTextSize(f"{theme.point_size * 0.9:.1f}pt")
        legend.setBrush(pg.mkBrush(theme.qcolor("panel", 220)))
        legend.setPen(pg.mkPen(p.border))
        for _sample, label in legend.items:
            label.setText(label.text, color=p.fg, size=f"{theme.point_size * 0.9:.1f}pt")


def app_icon() -> QIcon:
    """The application icon from resources/icon.svg."""
    return QIcon(str(RESOURCES / "icon.svg"))


def screen_is_small() -> bool:
    """True on screens lower than 900 px (the default layout then uses smaller splits)."""
    screen = QGuiApplication.primaryScreen()
    return screen is not None and screen.availableGeometry().height() < 900
