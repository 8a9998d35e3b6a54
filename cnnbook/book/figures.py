"""Figures that a reader can read: every matplotlib figure a page shows carries a measurement of
its own text, which the site's browser test compares with the size the figure is displayed at.

A page's first cell calls :func:`show_figures_with_measurements`; from then on each figure the page
displays (``plt.show()``, or a figure left at the end of a cell) becomes a PNG whose text chunk
``cnnbook-figure`` holds :func:`figure_measurements` as JSON:

* ``min_font_px``: the height of the smallest visible text in pixels of the PNG, its font size in
  points times ``dpi / 72``. Shown ``d`` pixels wide, a PNG ``w`` pixels wide scales that by
  ``d / w``; tests/test_site_browser.py requires ``min_font_px * d / w >= 9`` at a 1280-pixel
  window;
* ``overlaps``: pairs of visible texts whose boxes overlap (labels written over each other;
  more than a fifth of the smaller box);
* ``overflows``: texts that stick out of the box they are written in (a diagram's box).
"""

from __future__ import annotations

import io
import json

from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import FancyBboxPatch, Rectangle

__all__ = ["figure_measurements", "figure_png", "show_figures_with_measurements", "PNG_KEY"]

PNG_KEY = "cnnbook-figure"
"""The PNG text chunk that holds a figure's measurements."""

_TOLERANCE_PX = 1.0


def _texts(figure):
    """The texts a reader sees: titles, axis labels, the tick labels in view, legends, free
    texts and annotations, with non-blank strings."""
    found = list(figure.texts)
    if getattr(figure, "_suptitle", None) is not None:
        found.append(figure._suptitle)
    for axes in figure.axes:
        if not axes.get_visible():
            continue
        # the centre, left and right titles (matplotlib keeps the side ones as private Texts)
        found += [title for title in (getattr(axes, name, None)
                                      for name in ("title", "_left_title", "_right_title"))
                  if title is not None]
        for index, axis in enumerate((axes.xaxis, axes.yaxis)):
            if not (axes.axison and axis.get_visible()):  # set_axis_off() hides them all
                continue
            found.append(axis.label)
            low, high = sorted(axis.get_view_interval())
            margin = (high - low) * 1e-6
            # a locator may place ticks beyond the view, whose labels are never drawn
            found += [label for label in axis.get_majorticklabels() + axis.get_minorticklabels()
                      if low - margin <= label.get_position()[index] <= high + margin]
        found += list(axes.texts)
        for child in axes.get_children():
            if isinstance(child, Legend):
                found += child.get_texts() + [child.get_title()]
    for legend in figure.legends:
        found += legend.get_texts() + [legend.get_title()]
    return [text for text in found
            if text.get_visible() and text.get_text().strip() and text.get_alpha() != 0]


_OVERLAP_SHARE = 0.2
"""Two texts overlap when their boxes share more than this share of the smaller box: boxes include
the fonts' line spacing, so labels that only touch at a corner (an axis' first tick labels) share
a sliver and are not counted."""


def _overlap(first, second) -> bool:
    width = min(first.x1, second.x1) - max(first.x0, second.x0)
    height = min(first.y1, second.y1) - max(first.y0, second.y0)
    if width <= _TOLERANCE_PX or height <= _TOLERANCE_PX:
        return False
    smaller = min(first.width * first.height, second.width * second.height)
    return width * height > _OVERLAP_SHARE * smaller


def figure_measurements(figure) -> dict:
    """``{"min_font_px", "overlaps", "overflows", "dpi"}`` of ``figure`` as drawn (see the module
    docstring). Overlaps and overflows name the texts (their first 40 characters)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    dpi = float(figure.dpi)
    texts = _texts(figure)
    boxes = [(text, text.get_window_extent(renderer)) for text in texts]
    figure_box = figure.bbox
    boxes = [(text, box) for text, box in boxes
             if box.x1 > figure_box.x0 and box.x0 < figure_box.x1
             and box.y1 > figure_box.y0 and box.y0 < figure_box.y1]
    sizes = [text.get_fontsize() * dpi / 72 for text, _ in boxes]
    overlaps = []
    for index, (text, box) in enumerate(boxes):
        for other, other_box in boxes[index + 1:]:
            if _overlap(box, other_box):
                overlaps.append([text.get_text()[:40], other.get_text()[:40]])
    overflows = []
    for axes in figure.axes:
        patches = [patch for patch in axes.patches
                   if isinstance(patch, (FancyBboxPatch, Rectangle)) and patch.get_visible()]
        for text in axes.texts:
            if not (text.get_visible() and text.get_text().strip()):
                continue
            box = text.get_window_extent(renderer)
            centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            for patch in patches:
                frame = patch.get_window_extent(renderer)
                if not (frame.x0 <= centre[0] <= frame.x1 and frame.y0 <= centre[1] <= frame.y1):
                    continue
                if frame.width < box.height and frame.height < box.height:
                    continue  # a marker or a small swatch under a label, not its frame
                if (box.x0 < frame.x0 - _TOLERANCE_PX or box.x1 > frame.x1 + _TOLERANCE_PX
                        or box.y0 < frame.y0 - _TOLERANCE_PX or box.y1 > frame.y1 + _TOLERANCE_PX):
                    overflows.append(text.get_text()[:40])
                break
    return {"min_font_px": round(min(sizes), 2) if sizes else None, "overlaps": overlaps,
            "overflows": overflows, "dpi": dpi}


def figure_png(figure) -> bytes:
    """``figure`` as the PNG a page shows (tight bounding box, the figure's dpi), with its
    :func:`figure_measurements` in the text chunk :data:`PNG_KEY`."""
    measurements = figure_measurements(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", dpi=figure.dpi,
                   metadata={PNG_KEY: json.dumps(measurements)})
    return buffer.getvalue()


def show_figures_with_measurements() -> None:
    """Make every figure that this IPython kernel displays a :func:`figure_png`. Call it once,
    in a page's first cell, after ``import matplotlib.pyplot``; outside IPython it does
    nothing."""
    from IPython import get_ipython  # the book's environment only, as in cnnbook.book.pages

    shell = get_ipython()
    if shell is None:
        return
    # Matplotlib picks its backend when it first draws; the inline backend then registers its own
    # PNG printer, which would replace this one. Activating it now makes the order certain.
    shell.run_line_magic("matplotlib", "inline")
    # the inline backend has now registered its PNG printer for figures; this one replaces it
    # (IPython keeps one printer per type)
    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)
