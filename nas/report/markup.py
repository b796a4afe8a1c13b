"""A tiny document model rendered two ways: Markdown and self-contained HTML.

The report is built once as a list of blocks and rendered to both formats, so they always say the same thing.
Text is plain (no inline markup) and escaped for each format; images are PNG files next to the document,
linked from the Markdown and embedded as base64 in the HTML (one file to mail or archive). An
:class:`Interactive` block is a plot twice: its PNG in the Markdown, its self-contained HTML (plotly, the library
inlined once per page, no network needed) in the HTML. A :class:`Details` block is collapsed in the HTML
(``<details>``) and shown in full in the Markdown.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "Block",
    "Bullets",
    "Code",
    "Details",
    "Heading",
    "Image",
    "Interactive",
    "Para",
    "Table",
    "render_html",
    "render_markdown",
]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""


@dataclass(frozen=True)
class Image:
    path: Path  # a PNG file in the document's directory
    alt: str


@dataclass(frozen=True)
class Interactive:
    html: str  # a self-contained HTML fragment (a plotly div and its script)
    image: Image  # the same plot as a PNG, for the Markdown


@dataclass(frozen=True)
class Details:
    summary: str
    blocks: tuple[Heading | Para | Bullets | Table | Code | Image, ...]


Block = Heading | Para | Bullets | Table | Code | Image | Interactive | Details

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: .7em; overflow-x: auto; font-size: 85%; }
img { max-width: 100%; border: 1px solid #eee; }
details { margin: .8em 0; } summary { cursor: pointer; font-weight: 600; }
.winner { background: #f0f7f0; border: 1px solid #b7d8b7; padding: .2em 1em; border-radius: 4px; }
"""


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def _md_text(text: str) -> str:
    # Plain text: keep characters Markdown would read as emphasis, code or HTML from changing the meaning.
    # Underscores inside words (metric names) are left alone: CommonMark does not read them as emphasis.
    for char in ("\\", "*", "`", "<"):
        text = text.replace(char, "\\" + char)
    return text


def _markdown_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_md_text(block.text)}"
    if isinstance(block, Para):
        return _md_text(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md_text(item)}" for item in block.items)
    if isinstance(block, Table):
        lines = [
            "| " + " | ".join(_md_cell(h) for h in block.header) + " |",
            "|" + "|".join("---" for _ in block.header) + "|",
        ]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        return f"{fence}{block.language}\n{block.text.rstrip()}\n{fence}"
    if isinstance(block, Interactive):
        return _markdown_block(block.image)
    if isinstance(block, Details):
        return "\n\n".join([f"**{_md_text(block.summary)}**", *(_markdown_block(b) for b in block.blocks)])
    return f"![{_md_cell(block.alt)}]({block.path.name})"


def render_markdown(blocks: Sequence[Block]) -> str:
    return "\n\n".join(_markdown_block(block) for block in blocks) + "\n"


def _html_block(block: Block) -> str:
    esc = html.escape
    if isinstance(block, Heading):
        level = min(max(block.level, 1), 6)
        return f"<h{level}>{esc(block.text)}</h{level}>"
    if isinstance(block, Para):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Code):
        return f"<pre><code>{esc(block.text.rstrip())}</code></pre>"
    if isinstance(block, Interactive):
        return f"<figure>{block.html}</figure>"
    if isinstance(block, Details):
        inner = "\n".join(_html_block(b) for b in block.blocks)
        return f"<details><summary>{esc(block.summary)}</summary>\n{inner}\n</details>"
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{esc(block.alt)}" src="data:image/png;base64,{data}"></figure>'


def render_html(blocks: Sequence[Block], title: str) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
    ]
    parts += [_html_block(block) for block in blocks]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
