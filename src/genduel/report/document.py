"""A tiny document model: blocks (headings, paragraphs, tables, figures, galleries, labelled
image rows) rendered to Markdown here and to HTML by :mod:`genduel.report.page`, from the same
list, so the two never disagree.

Text in blocks is the little inline Markdown both renderers understand: ``**bold**``,
``*italic*``, ```code```, ``[text](#anchor)`` and ``![alt](path)``. Headings carry the anchor
GitHub gives them (:func:`anchors`), so a ``[How to read this](#how-to-read-this)`` link works in
the Markdown on GitHub and in the HTML alike.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Any

#: Sample grids are shown this many times larger than their pixels (28 px -> 84 CSS px).
PIXEL_SCALE = 3


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    """A paragraph; ``lead`` marks the opening summary (set off in the HTML)."""

    text: str
    lead: bool = False


@dataclass(frozen=True)
class Bullets:
    """A list of short items."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table; ``caption`` (inline Markdown, e.g. a link to the metric explanations) goes above.

    Columns whose cells mostly read as numbers (:func:`numeric_columns`) are right-aligned.
    """

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """One image; ``scale`` > 1 shows a grid of small images enlarged with square pixels."""

    path: str  # relative to the report directory
    caption: str
    scale: int = 1


@dataclass(frozen=True)
class Gallery:
    """Figures side by side where the page is wide enough, one below the other where not."""

    figures: list[Figure]


@dataclass(frozen=True)
class ImageRows:
    """Labelled rows of one image each (e.g. the samples after each epoch, or of each class)."""

    caption: str
    rows: list[tuple[str, str]]  # (label, image path relative to the report)
    scale: int = PIXEL_SCALE


Block = Heading | Para | Bullets | Table | Figure | Gallery | ImageRows


def fmt(value: Any, std: Any = None) -> str:
    """``12.3 ± 0.4`` with 3-4 significant digits; ``n/a`` for missing values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        text = f"{value:.4g}"
    if std is not None and std > 0:
        text += f" ± {std:.2g}"
    return text


_NUMBER = r"[-+−]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
#: ``12``, ``-3.5e-05``, ``12.3 ± 0.4``, ``10 / 9``, ``91.2 %``, ``n/a``; bold allowed.
_NUMERIC = re.compile(rf"^{_NUMBER}(?:\s*(?:±|/)\s*{_NUMBER})*(?:\s*%)?$|^n/a$")


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def is_numeric(cell: str) -> bool:
    """Whether a cell reads as a number (possibly ``± std``, a ratio or a percentage)."""
    return bool(_NUMERIC.match(cell.replace("**", "").strip()))


def slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> ``-``."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(blocks: list[Block]) -> dict[int, str]:
    """Block index -> anchor of each heading, made unique as GitHub does (``x``, ``x-1``...)."""
    seen: dict[str, int] = {}
    out = {}
    for i, b in enumerate(blocks):
        if isinstance(b, Heading):
            base = slug(b.text)
            n = seen.get(base, 0)
            seen[base] = n + 1
            out[i] = base if n == 0 else f"{base}-{n}"
    return out


def numeric_columns(header: list[str], rows: list[list[str]]) -> list[bool]:
    """Per column: do most of its non-empty cells read as numbers (then it is right-aligned)?"""
    out = []
    for j in range(len(header)):
        cells = [r[j] for r in rows if j < len(r) and r[j].strip()]
        out.append(bool(cells) and 2 * sum(is_numeric(c) for c in cells) > len(cells))
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A pipe table, number columns right-aligned."""
    align = ["---:" if n else "---" for n in numeric_columns(header, rows)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown, figure paths relative to the report."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
        elif isinstance(b, Gallery):
            out.append(_md_table([f.caption for f in b.figures],
                                 [[f"![{f.caption}]({f.path})" for f in b.figures]]))
        elif isinstance(b, ImageRows):
            out.append(f"*{b.caption}*\n\n" + _md_table(
                ["", ""], [[label, f"![{label}]({path})"] for label, path in b.rows]))
        else:
            caption = f"{b.caption}\n\n" if b.caption else ""
            out.append(caption + _md_table(b.header, b.rows))
        out.append("")
    return "\n".join(out)
