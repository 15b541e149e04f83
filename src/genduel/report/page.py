"""The HTML rendering of the report's blocks: one self-contained, responsive page.

Every image is embedded as a ``data:`` URI (base64), so ``report.html`` works copied alone and
inside MLflow's artifact viewer, where relative ``figures/`` paths do not resolve. The page has a
``<meta viewport>``; tables sit in a wrapper that scrolls sideways on narrow screens; images never
grow wider than the page, and grids of small images are shown :data:`PIXEL_SCALE` times larger
with square pixels (``image-rendering: pixelated``) where the page is wide enough.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from genduel.errors import DataError
from genduel.report.document import (
    Block,
    Bullets,
    Figure,
    Gallery,
    Heading,
    ImageRows,
    Para,
    Table,
    anchors,
    numeric_columns,
    png_size,
)

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:0 auto;
 padding:1em;line-height:1.45;color:#1a1a1a}
h1{font-size:1.6em;line-height:1.2}
code{overflow-wrap:anywhere;font-size:.92em}
a{color:#0550ae}
.lead{font-size:1.05em;background:#f4f6f8;border-left:4px solid #0550ae;padding:.6em .9em}
.tablewrap{overflow-x:auto;margin:.4em 0 1.2em;max-width:100%}
table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8}
.tablewrap td:first-child,.tablewrap th:first-child{position:sticky;left:0;background:#fff;
 box-shadow:1px 0 0 #ccc}
.tablewrap th:first-child{background:#f4f6f8}
li{margin:.3em 0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.tcap{margin:.8em 0 0;font-size:.9em;color:#444}
img{max-width:100%;height:auto}
img.px{image-rendering:pixelated}
figure{margin:1em 0;min-width:0;max-width:100%}
figcaption{font-size:.9em;color:#444;margin-top:.2em}
.gallery{display:flex;flex-wrap:wrap;gap:12px 24px;align-items:flex-start}
.gallery figure{margin:0;flex:0 1 auto}
.rows{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 10px;
 align-items:center;margin:.4em 0 1.2em}
.rows span{font-size:.9em;white-space:nowrap}
.rows img{display:block}
"""


class _Images:
    """Resolves image paths to ``<img>`` tags: data URIs when ``base_dir`` is given."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir

    def tag(self, path: str, alt: str, scale: int = 1) -> str:
        alt = html.escape(alt)
        if self.base_dir is None:
            return f'<img src="{html.escape(path)}" alt="{alt}">'
        file = self.base_dir / path
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DataError(f"the report shows {path} but {file} is unreadable ({exc}); "
                            "re-run the report stage") from exc
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        size, extra = png_size(data), ""
        if size is not None:
            # width: its natural size times scale, never wider than the page (max-width:100%)
            extra = f' width="{size[0] * scale}" style="width:{size[0] * scale}px"'
        cls = ' class="px"' if scale > 1 else ""
        return f'<img{cls} src="{uri}" alt="{alt}"{extra}>'


def _inline(text: str, images: _Images) -> str:
    """The inline Markdown of the blocks: images, links, **bold**, *italic*, `code`."""
    text = html.escape(text, quote=False)
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", lambda m: images.tag(m[2], m[1]), text)
    text = re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<i>\1</i>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _table(b: Table, images: _Images) -> str:
    head = "".join(f"<th>{_inline(h, images)}</th>" for h in b.header)
    numeric = numeric_columns(b.header, b.rows)
    rows = "".join(
        "<tr>" + "".join(f'<td{" class=num" if n else ""}>{_inline(c, images)}</td>'
                         for c, n in zip(r, numeric)) + "</tr>" for r in b.rows)
    caption = f'<p class="tcap">{_inline(b.caption, images)}</p>' if b.caption else ""
    return (f'{caption}<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _figure(f: Figure, images: _Images) -> str:
    return (f"<figure>{images.tag(f.path, f.caption, f.scale)}"
            f"<figcaption>{_inline(f.caption, images)}</figcaption></figure>")


def _block(b: Block, images: _Images, anchor: str | None) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{anchor}">{html.escape(b.text)}</h{b.level}>'
    if isinstance(b, Para):
        return f"<p{' class=lead' if b.lead else ''}>{_inline(b.text, images)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i, images)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Figure):
        return _figure(b, images)
    if isinstance(b, Gallery):
        return '<div class="gallery">' + "".join(_figure(f, images) for f in b.figures) + "</div>"
    if isinstance(b, ImageRows):
        cells = "".join(f"<span>{_inline(label, images)}</span>{images.tag(path, label, b.scale)}"
                        for label, path in b.rows)
        return (f'<p class="tcap">{_inline(b.caption, images)}</p>'
                f'<div class="rows">{cells}</div>')
    return _table(b, images)


def to_html(blocks: list[Block], title: str, base_dir: Path | None = None) -> str:
    """One HTML page of the blocks.

    Args:
        blocks: the document.
        title: the page title.
        base_dir: the directory image paths are relative to; when given every image is read
            and embedded as a data URI (the page then needs no other file), else the paths are
            left as links.

    Raises:
        DataError: an image the blocks show is missing under ``base_dir``.
    """
    images, ids = _Images(base_dir), anchors(blocks)
    body = "\n".join(_block(b, images, ids.get(i)) for i, b in enumerate(blocks))
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            f"{body}\n</body></html>\n")
