"""`harden compare`'s table as Markdown and as a self-contained HTML page."""
from __future__ import annotations

import html


def to_markdown(header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def to_html(header: list[str], rows: list[list[str]], notes: list[str]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>harden compare</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>"
            f"<h1>harden compare</h1><table><tr>{head}</tr>{body}</table>"
            + "".join(f"<p>{e(n)}</p>" for n in notes) + "</body></html>\n")
