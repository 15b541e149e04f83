"""The document model: number formatting, and Markdown and HTML carrying the same content."""

from __future__ import annotations

from genduel.report.document import Figure, Heading, Para, Table, fmt, to_html, to_markdown


def test_fmt_handles_missing_and_non_finite():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(3) == "3"


def test_markdown_and_html_render_the_same_blocks():
    blocks = [Heading("Title", 1), Para("A **bold** `code` claim"),
              Table(["a", "b"], [["1", "![x](figures/x.png)"]]), Figure("figures/y.png", "cap")]
    md, page = to_markdown(blocks), to_html(blocks, "Title")
    assert "# Title" in md and "| a | b |" in md and "![cap](figures/y.png)" in md
    assert "<h1>Title</h1>" in page and "<b>bold</b>" in page and "<code>code</code>" in page
    assert '<img alt="x" src="figures/x.png">' in page and '<img src="figures/y.png"' in page
