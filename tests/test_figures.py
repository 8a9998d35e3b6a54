"""cnnbook.book.figures: the measurements a page's figure carries into its PNG (the smallest text
in pixels, overlapping labels, text sticking out of its box), read back from the PNG with PIL."""

from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from cnnbook.book import figures  # noqa: E402


def _read_back(figure) -> tuple[dict, tuple[int, int]]:
    with Image.open(io.BytesIO(figures.figure_png(figure))) as image:
        return json.loads(image.text[figures.PNG_KEY]), image.size


@pytest.mark.parametrize(("dpi", "smallest_points"), [(100, 6), (110, 8.5), (72, 10)])
def test_smallest_text_is_measured_in_pixels_of_the_png(dpi, smallest_points):
    figure, axes = plt.subplots(figsize=(4, 3), dpi=dpi)
    axes.plot([0, 1], [0, 1])
    axes.set_title("a title", fontsize=14)
    axes.tick_params(labelsize=smallest_points + 2)
    axes.text(0.5, 0.2, "the smallest", fontsize=smallest_points)
    measured, (width, _) = _read_back(figure)
    # a point is 1/72 inch: at `dpi` pixels per inch, `points * dpi / 72` pixels
    assert measured["min_font_px"] == pytest.approx(smallest_points * dpi / 72, abs=0.01)
    assert measured["dpi"] == dpi and measured["overlaps"] == [] and measured["overflows"] == []
    assert abs(width - 4 * dpi) < 0.2 * 4 * dpi  # the tight box trims only the margins
    plt.close(figure)


def test_labels_written_over_each_other_are_reported():
    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    axes.text(0.3, 0.5, "GoogLeNet (Inception v1)")
    axes.text(0.32, 0.51, "MobileNet")
    axes.text(0.3, 0.1, "far away")
    measured, _ = _read_back(figure)
    assert measured["overlaps"] == [["GoogLeNet (Inception v1)", "MobileNet"]]
    plt.close(figure)


def test_text_sticking_out_of_its_box_is_reported():
    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    axes.set_xlim(0, 10)
    axes.set_ylim(0, 10)
    axes.add_patch(Rectangle((1, 6), 2, 2, fill=False))
    axes.text(2, 7, "3x3 conv 128, g=32, a label far too long", ha="center", va="center")
    axes.add_patch(Rectangle((5, 1), 4, 3, fill=False))
    axes.text(7, 2.5, "fits", ha="center", va="center")
    measured, _ = _read_back(figure)
    assert measured["overflows"] == ["3x3 conv 128, g=32, a label far too long"]
    plt.close(figure)
