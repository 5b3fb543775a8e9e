"""A tiny document model rendered to Markdown or HTML, so generated texts have one source."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


@dataclass(frozen=True)
class Block:
    kind: str  # h1, h2, h3, p, ul, table
    text: str = ""
    items: tuple[str, ...] = ()
    rows: tuple[tuple[str, str], ...] = ()


def h(level: int, text: str) -> Block:
    return Block(f"h{level}", text)


def p(text: str) -> Block:
    return Block("p", text)


def ul(*items: str) -> Block:
    return Block("ul", items=tuple(i for i in items if i))


def table(*rows: tuple[str, str]) -> Block:
    return Block("table", rows=tuple(rows))


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind.startswith("h"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "ul":
            out.append("\n".join(f"- {i}" for i in b.items))
        elif b.kind == "table":
            lines = ["| | |", "|---|---|"]
            lines += [f"| **{k}** | {v.replace('|', '/')} |" for k, v in b.rows]
            out.append("\n".join(lines))
        out.append("")
    return "\n".join(out)


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


def to_html(blocks: list[Block], title: str, lang: str) -> str:
    body: list[str] = []
    for b in blocks:
        if b.kind.startswith("h"):
            body.append(f"<{b.kind}>{_inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            body.append(
                "<table>"
                + "".join(f"<tr><th>{_inline(k)}</th><td>{_inline(v)}</td></tr>" for k, v in b.rows)
                + "</table>"
            )
    return (
        f"<!doctype html><html lang='{html.escape(lang)}'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font:16px/1.5 system-ui,sans-serif;"
        "max-width:48rem;margin:2rem auto;padding:0 1rem}th,td{border:1px solid #ddd;"
        "padding:.3rem .5rem;text-align:left;vertical-align:top}table{border-collapse:collapse}"
        "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
