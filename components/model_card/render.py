"""The card's sections as Markdown and as one self-contained HTML page (same content)."""

from __future__ import annotations

import html

from visiontfx.components.model_card.card import CardFacts, Section, Table, sections

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
    "text-align:left}th{background:#f3f3f3}.warn{color:#a40000;font-weight:600}"
)


def title(facts: CardFacts) -> str:
    return f"Model card: {facts.model_name}, version {facts.version}"


def subtitle(facts: CardFacts) -> str:
    return f"Pushed {facts.pushed_at}; {'blessed' if facts.blessed else 'NOT blessed'} by the Evaluator."


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.headers) + " |"]
    lines.append("|" + "---|" * len(table.headers))
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return [*lines, ""]


def to_markdown(facts: CardFacts, parts: list[Section] | None = None) -> str:
    lines = [f"# {title(facts)}", "", subtitle(facts), ""]
    for section in parts if parts is not None else sections(facts):
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            lines += _md_table(table)
    return "\n".join(lines).rstrip() + "\n"


def _html_cell(text: str, tag: str) -> str:
    css = ' class="warn"' if text.startswith("NOT ") else ""
    return f"<{tag}{css}>{html.escape(text)}</{tag}>"


def _html_table(table: Table) -> str:
    head = "".join(_html_cell(h, "th") for h in table.headers)
    body = "".join("<tr>" + "".join(_html_cell(c, "td") for c in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(facts: CardFacts, parts: list[Section] | None = None) -> str:
    body = [f"<h1>{html.escape(title(facts))}</h1>", f"<p>{html.escape(subtitle(facts))}</p>"]
    for section in parts if parts is not None else sections(facts):
        anchor = section.title.lower().replace(" ", "-").replace("(", "").replace(")", "")
        body.append(f'<section id="{html.escape(anchor)}"><h2>{html.escape(section.title)}</h2>')
        body += [f"<p>{html.escape(paragraph)}</p>" for paragraph in section.paragraphs]
        body += [_html_table(table) for table in section.tables]
        body.append("</section>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title(facts))}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
