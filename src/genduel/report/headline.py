"""The README's headline, from the pipeline's own outputs: the sample grids side by side
(``docs/images/samples.png``) and the table of the default run's main numbers.

Run from the repository root after ``make repro``::

    python -m genduel.report.headline

It reads ``data/prepared/real_grid.png``, training seed 0's
``eval/seeds/0/samples_{vae,vae_prior,gan}.png`` and the report's ``metrics/eval_*.json``,
writes the image, and rewrites the table between the :data:`TABLE_START` and
:data:`TABLE_END` markers of ``README.md``. No stage runs it, so it is
no DVC dependency: the README's numbers change only when someone chooses to refresh them.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from genduel.errors import DataError, GenDuelError
from genduel.io import atomic_write, read_bytes, read_json, read_png
from genduel.metrics.table import metric_info

#: The panels of the image: (label, file relative to the repository root), left to right.
PANELS = (("Real (test images)", "data/prepared/real_grid.png"),
          ("VAE, z ~ N(0, I)", "eval/seeds/0/samples_vae.png"),
          ("VAE, z ~ fitted GMM", "eval/seeds/0/samples_vae_prior.png"),
          ("GAN", "eval/seeds/0/samples_gan.png"))

#: The table's columns: (metrics row, header), in the report's order.
COLUMNS = (("vae", "VAE, z ~ N(0, I)"), ("vae_prior", "VAE, z ~ fitted GMM"), ("gan", "GAN"),
           ("real", "real data"), ("class_gaussians", "per-class pixel Gaussians"))


class Row(NamedTuple):
    """One table row: its label, the metric keys shown (joined by `` / ``), the decimals, and
    whether the value carries ``± <key>_std`` (the std over the evaluation's sample draws with
    one training seed, over the seeds with more)."""

    label: str
    keys: tuple[str, ...]
    decimals: int
    std: bool = False


ROWS = (Row("FID (judge)", ("fid",), 1, std=True),
        Row("KID (judge)", ("kid",), 2),
        Row("Inception Score (judge)", ("inception_score",), 2),
        Row("Precision / recall", ("precision", "recall"), 2),
        Row("Classes well covered (of 10)", ("classes_well_covered",), 1),
        Row("Test ELBO (bits/dim)", ("bits_per_dim",), 3),
        Row("IWAE k=100 (bits/dim)", ("iwae_k100_bits_per_dim",), 3))

TABLE_START = "<!-- headline-table:start (python -m genduel.report.headline) -->"
TABLE_END = "<!-- headline-table:end -->"
_FIX = "run `make repro` first (the headline is drawn from its outputs)"


class Panel(NamedTuple):
    label: str
    png: bytes  # a whole PNG file (a sample grid)


def _grey(img) -> bool:
    """Whether an RGB image holds only greys (the grids of one-channel datasets are saved RGB)."""
    r, g, b = img.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


def compose(panels: Sequence[Panel], *, scale: int = 1, gap: int = 12,
            font_size: int = 14) -> bytes:
    """One PNG: the grids side by side on white, each under its label, pixels kept square.

    Args:
        panels: the grids, left to right (any sizes; shorter ones are top-aligned).
        scale: each grid is enlarged ``scale`` times (nearest neighbour).
        gap: white pixels around and between the panels.
        font_size: the labels' size in pixels.

    Returns:
        PNG bytes, greyscale (mode ``L``) when every grid is grey, RGB otherwise.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not panels or scale < 1:
        raise ValueError("compose needs at least one panel and scale >= 1")
    grids = []
    for p in panels:
        with Image.open(io.BytesIO(p.png)) as img:
            rgb = img.convert("RGB")
        grids.append(rgb.resize((rgb.width * scale, rgb.height * scale), Image.Resampling.NEAREST))
    font = ImageFont.load_default(size=font_size)
    label_h = font_size + gap // 2 + 4
    width = sum(g.width for g in grids) + gap * (len(grids) + 1)
    height = label_h + max(g.height for g in grids) + 2 * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = gap
    for panel, grid in zip(panels, grids, strict=True):
        text_w = draw.textlength(panel.label, font=font)
        draw.text((x + (grid.width - text_w) / 2, gap), panel.label, fill="black", font=font)
        canvas.paste(grid, (x, gap + label_h))
        x += grid.width + gap
    if all(_grey(g) for g in grids):
        canvas = canvas.convert("L")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _num(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` places, or more for a small one: at least 2 significant;
    a whole number without decimals (class counts)."""
    if float(value).is_integer():
        return str(int(value))
    if abs(value) < 1:
        decimals = max(decimals, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _cell(row: Row, metrics: Mapping[str, float], has_likelihood: bool) -> str:
    if any(k not in metrics for k in row.keys):
        return "–" if has_likelihood else "no likelihood"
    text = " / ".join(_num(metrics[k], row.decimals) for k in row.keys)
    spread = metrics.get(f"{row.keys[0]}_std", 0.0)
    if row.std and spread > 0:
        text += f" ± {spread:.{row.decimals}f}"
    return text


def headline_table(evals: Mapping[str, Mapping[str, float]]) -> str:
    """The Markdown table of :data:`ROWS` for the :data:`COLUMNS` rows of ``evals``.

    Args:
        evals: metrics row name (``vae``, ``gan``, ...) -> the numbers of its
            ``metrics/eval_<row>.json``.

    A model without a likelihood (the GAN) reads *no likelihood* where a likelihood row is
    missing; the rows that are no model (real data, baselines) read ``–``.
    """
    header = ["metric", "better", *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ROWS:
        better = "higher" if metric_info(row.keys[0]).higher_is_better else "lower"
        cells = [_cell(row, evals[name], has_likelihood=name != "gan") for name, _ in COLUMNS]
        lines.append("| " + " | ".join([row.label, better, *cells]) + " |")
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """``text`` with what lies between :data:`TABLE_START` and :data:`TABLE_END` replaced by
    ``table``. Raises :class:`DataError` when the markers are missing or out of order."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise DataError(f"the markers {TABLE_START!r} and {TABLE_END!r} are missing or out of "
                        "order; put them, each on its own line, around the table")
    return f"{text[:start + len(TABLE_START)]}\n{table}\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genduel.report.headline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, default=Path("."), metavar="DIR",
                        help="the workspace whose pipeline outputs are drawn (data/prepared, "
                        "eval, metrics); default: the current directory")
    parser.add_argument("--image", type=Path, default=Path("docs/images/samples.png"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--scale", type=int, default=1, help="grid enlargement (default 1)")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f"--scale {args.scale}: give an integer >= 1")
    root = args.outputs
    try:
        panels = [Panel(label, read_png(root / rel, _FIX)) for label, rel in PANELS]
        evals = {name: read_json(root / "metrics" / f"eval_{name}.json", _FIX, ("fid",))
                 for name, _ in COLUMNS}
        table = headline_table(evals)
        readme = args.readme
        try:
            text = replace_table(read_bytes(readme, "run from the repository root, or pass "
                                            "--readme").decode("utf-8"), table)
        except UnicodeDecodeError:
            raise DataError(f"{readme}: not a UTF-8 text file") from None
        atomic_write(args.image, compose(panels, scale=args.scale))
        atomic_write(readme, text.encode())
    except GenDuelError as exc:
        sys.stderr.write(f"genduel headline: error: {exc}\n")
        return 2
    sys.stdout.write(f"wrote {args.image} and the table in {readme}:\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
