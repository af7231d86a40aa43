"""HTML building blocks for the report: escaping, tables, embedded figures, the page shell.

Every string that comes from data (class names, file names, rejection reasons,
URIs) goes through ``esc``; only ``Markup`` built here is trusted as HTML. The
page is self-contained: inline CSS, images as base64 data URIs, no script.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from typing import Iterable, Sequence


class Markup(str):
    """A string that is already safe HTML (built by this module)."""


def esc(value: object) -> Markup:
    """Escaped text, or ``value`` unchanged when it is already Markup."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[str]) -> Markup:
    return Markup("".join(esc(part) for part in parts))


def tag(name: str, content: object = "", **attributes: object) -> Markup:
    """``<name attr="…">content</name>``; ``class_`` → ``class``, ``data_x`` → ``data-x``."""
    rendered = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{esc(value)}"'
        for key, value in attributes.items()
        if value is not None
    )
    return Markup(f"<{name}{rendered}>{esc(content)}</{name}>")


def paragraph(content: object, class_: str | None = None) -> Markup:
    return tag("p", content, class_=class_)


def note(content: object, level: str = "info") -> Markup:
    """A call-out box; level is info, ok, warn or bad (colours in the CSS)."""
    return tag("div", content, class_=f"note {level}")


def code(text: object) -> Markup:
    return tag("code", text)


Cell = object  # str/number (escaped) or Markup (trusted)


def table(
    headers: Sequence[Cell],
    rows: Iterable[Sequence[Cell]],
    *,
    class_: str | None = None,
    id_: str | None = None,
    numeric_columns: Sequence[int] = (),
) -> Markup:
    """A table; Markup cells may be whole ``<td>``/``<th>`` elements (cell attributes, row headers)."""

    def cell(value: Cell, column: int) -> str:
        if isinstance(value, Markup) and value.startswith(("<td", "<th")):
            return value
        return tag("td", value, class_="num" if column in numeric_columns else None)

    head = "".join(tag("th", h) for h in headers)
    body = "".join(f"<tr>{''.join(cell(v, i) for i, v in enumerate(row))}</tr>" for row in rows)
    content = Markup(f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>")
    return tag("table", content, class_=class_, id=id_)


@dataclasses.dataclass(frozen=True)
class Figure:
    file_name: str
    png: bytes


class Figures:
    """Collects each figure's PNG (written next to the page) and returns its embedded HTML."""

    def __init__(self) -> None:
        self.items: list[Figure] = []

    def add(self, name: str, png: bytes, caption: object, alt: str) -> Markup:
        file_name = f"{len(self.items) + 1:02d}-{_slug(name)}.png"
        self.items.append(Figure(file_name, png))
        source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        image = Markup(f'<img src="{source}" alt="{esc(alt)}" data-file="{esc(file_name)}">')
        return tag("figure", Markup(image + tag("figcaption", caption)))


@dataclasses.dataclass
class Section:
    id: str
    title: str
    intro: Markup
    parts: list[tuple[str, str, Markup]]  # (anchor id, heading, body)


def subsection(anchor: str, heading: str, *body: object) -> tuple[str, str, Markup]:
    return anchor, heading, join(body)


def render_page(title: str, header: Markup, sections: Sequence[Section]) -> str:
    """The whole document: title block, table of contents, then every section."""
    toc = "".join(
        tag(
            "li",
            Markup(
                tag("a", s.title, href=f"#{s.id}")
                + tag("ul", join(tag("li", tag("a", h, href=f"#{a}")) for a, h, _ in s.parts))
            ),
        )
        for s in sections
    )
    body = "".join(
        tag(
            "section",
            Markup(
                tag("h2", s.title)
                + s.intro
                + "".join(tag("div", Markup(tag("h3", h) + b), id=a, class_="part") for a, h, b in s.parts)
            ),
            id=s.id,
        )
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{header}<nav><h2>Contents</h2><ol>{toc}</ol></nav>{body}</main></body></html>\n"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "figure"


CSS = """
:root { --ink:#1f2328; --muted:#57606a; --line:#d0d7de; --bg:#f6f8fa; --ok:#1a7f37; --bad:#cf222e;
        --warn:#9a6700; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color:var(--ink); background:#fff; }
main { max-width:1180px; margin:0 auto; padding:24px 32px 64px; }
h1 { font-size:28px; margin:0 0 4px; }
h2 { font-size:22px; margin:40px 0 8px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:17px; margin:28px 0 6px; }
p { margin:6px 0 10px; }
.meta { color:var(--muted); margin:0 0 16px; }
code { font:13px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background:var(--bg); padding:1px 4px;
       border-radius:4px; word-break:break-all; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:16px 0; }
.card { flex:1 1 150px; border:1px solid var(--line); border-radius:8px; padding:10px 14px;
        background:var(--bg); }
.card .label { color:var(--muted); font-size:13px; }
.card .value { font-size:24px; font-weight:600; }
.card .sub { color:var(--muted); font-size:12px; }
.card.ok { border-color:var(--ok); } .card.ok .value { color:var(--ok); }
.card.bad { border-color:var(--bad); } .card.bad .value { color:var(--bad); }
nav { border:1px solid var(--line); border-radius:8px; padding:4px 18px 8px; background:#fff; }
nav h2 { border:0; margin:8px 0 0; font-size:16px; }
nav ol { margin:4px 0; padding-left:20px; } nav ul { margin:0 0 4px; padding-left:18px; color:var(--muted); }
nav li li { display:inline; margin-right:10px; } nav a { color:var(--accent); text-decoration:none; }
figure { margin:8px 0 16px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
table { border-collapse:collapse; margin:8px 0 14px; font-size:14px; }
th, td { border:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:var(--bg); }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
tbody tr:nth-child(even) td { background:#fbfcfd; }
table.confusion td { text-align:center; min-width:44px; }
.note { border-left:4px solid var(--accent); background:#ddf4ff; padding:8px 12px; margin:8px 0 12px;
        border-radius:0 6px 6px 0; }
.note.ok { border-color:var(--ok); background:#dafbe1; }
.note.warn { border-color:var(--warn); background:#fff8c5; }
.note.bad { border-color:var(--bad); background:#ffebe9; }
details summary { cursor:pointer; color:var(--accent); margin:6px 0; }
.right { color:var(--ok); font-weight:600; } .wrong { color:var(--bad); font-weight:600; }
"""
