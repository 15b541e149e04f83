"""The document model: number formatting, alignment, anchors, and Markdown and HTML carrying the
same content, the HTML with every image embedded."""

from __future__ import annotations

import base64
import re

import pytest

from genduel.errors import DataError
from genduel.report.document import (
    Bullets,
    Figure,
    Gallery,
    Heading,
    ImageRows,
    Para,
    Table,
    anchors,
    fmt,
    is_numeric,
    png_size,
    slug,
    to_markdown,
)
from genduel.report.page import to_html


def test_fmt_handles_missing_and_non_finite():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(3) == "3"
    assert fmt(12.345, 0.44) == "12.35 ± 0.44"


@pytest.mark.parametrize("cell", ["12", "-3.5e-05", "12.3 ± 0.4", "**339.2 ± 2.1**", "10 / 9",
                                  "91.2 %", "n/a", "1,234"])
def test_numbers_are_recognised(cell):
    assert is_numeric(cell)


@pytest.mark.parametrize("cell", ["FID", "↓ lower", "tie", "**GAN**", "judge: 0.92", "✓", "—",
                                  "no likelihood (implicit model)", "epoch 3"])
def test_text_is_not_a_number(cell):
    assert not is_numeric(cell)


def test_anchors_follow_githubs_slugs_and_stay_unique():
    assert slug("How to read this") == "how-to-read-this"
    assert slug("Sample quality and diversity (judge features)") == \
        "sample-quality-and-diversity-judge-features"
    blocks = [Heading("Likelihood"), Para("x"), Heading("Likelihood", 3)]
    assert anchors(blocks) == {0: "likelihood", 2: "likelihood-1"}


def test_markdown_right_aligns_number_columns_and_keeps_relative_figure_links():
    blocks = [Heading("Title", 1), Para("A **bold** `code` [link](#title) claim"),
              Table(["Metric", "VAE", "GAN"], [["FID", "**339.2 ± 2**", "353.3 ± 1"],
                                                ["IS", "2.9", "n/a"]], caption="See below."),
              Figure("figures/y.png", "cap"),
              Gallery([Figure("figures/a.png", "A", 3), Figure("figures/b.png", "B", 3)]),
              ImageRows("After each epoch", [("epoch 1", "figures/e1.png")]),
              Bullets(["**one**", "two"])]
    md = to_markdown(blocks)
    assert "# Title" in md and "| Metric | VAE | GAN |\n|---|---:|---:|" in md
    assert "See below.\n\n| Metric" in md and "![cap](figures/y.png)" in md
    assert "| A | B |" in md and "| ![A](figures/a.png) | ![B](figures/b.png) |" in md
    assert "| epoch 1 | ![epoch 1](figures/e1.png) |" in md
    assert md.endswith("- **one**\n- two\n")
    assert "<ul><li><b>one</b></li><li>two</li></ul>" in to_html(blocks, "T")


def _png(tmp_path, name, w, h):
    from PIL import Image

    path = tmp_path / "figures" / name
    path.parent.mkdir(exist_ok=True)
    Image.new("L", (w, h), 128).save(path)
    return path


def test_html_embeds_every_image_as_a_data_uri_with_the_files_bytes(tmp_path):
    files = {name: _png(tmp_path, name, w, 30) for name, w in
             (("grid.png", 62), ("plot.png", 640), ("cell.png", 20), ("row.png", 242))}
    blocks = [Heading("T", 1), Table(["img"], [["![in a cell](figures/cell.png)"]]),
              Figure("figures/plot.png", "a plot"), Figure("figures/grid.png", "samples", 3),
              ImageRows("rows", [("epoch 1", "figures/row.png")])]
    page = to_html(blocks, "T", tmp_path)
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    decoded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert decoded == {f.read_bytes() for f in files.values()}
    assert "figures/" not in page  # nothing points at a file beside the page
    assert png_size(files["grid.png"].read_bytes()) == (62, 30)
    # grids at 3x their pixels, pixelated; plots at their own size; never wider than the page
    assert re.search(r'<img class="px" src="data:[^"]+" alt="samples" width="186" '
                     r'style="width:186px">', page)
    assert re.search(r'<img src="data:[^"]+" alt="a plot" width="640"', page)
    assert "image-rendering:pixelated" in page and "img{max-width:100%;height:auto}" in page


def test_html_page_is_responsive_and_marks_numbers_and_anchors(tmp_path):
    blocks = [Heading("How to read this"), Para("Opening", lead=True),
              Table(["Metric", "VAE"], [["FID", "**339.2**"]], caption="[How](#how-to-read-this)")]
    page = to_html(blocks, "T")
    assert '<meta name=\'viewport\' content=\'width=device-width, initial-scale=1\'>' in page
    assert '<h2 id="how-to-read-this">How to read this</h2>' in page
    assert '<p class=lead>Opening</p>' in page
    assert '<div class="tablewrap"><table>' in page and ".tablewrap{overflow-x:auto" in page
    assert "<td>FID</td><td class=num><b>339.2</b></td>" in page
    assert '<a href="#how-to-read-this">How</a>' in page


def test_html_names_a_missing_image(tmp_path):
    with pytest.raises(DataError, match="figures/gone.png"):
        to_html([Figure("figures/gone.png", "x")], "T", tmp_path)
