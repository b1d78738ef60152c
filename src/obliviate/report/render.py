"""Markdown and HTML renderers of the report's blocks (:mod:`obliviate.report.document`).

``report.md`` is GitHub Markdown with images as relative links under ``figures/`` and footnotes
for the reasons behind missing numbers. ``report.html`` is one self-contained page: CSS inline,
images base64-embedded, no script, no external resource; a missing number shows as "—" with
its reason as a footnote and as the cell's ``title``. Footnotes are numbered in order of first
reference, the same in both pages.
"""

from __future__ import annotations

import base64
import html

from obliviate.report.document import (
    FIGURES_DIR,
    SECTION_TITLES,
    Block,
    Figure,
    Heading,
    Para,
)


class _Notes:
    """Footnote numbers, assigned in order of first reference (same order in md and html)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def ref(self, reason: str) -> int:
        return self.ids.setdefault(reason, len(self.ids) + 1)


def _md_text(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_md(blocks: list[Block], title: str, generated: str) -> str:
    """The Markdown page of ``blocks`` under ``title`` (``generated``: the line below it)."""
    notes = _Notes()
    out = [f"# {title}", ""]
    if generated:
        out += [generated, ""]
    for bl in blocks:
        if isinstance(bl, Heading):
            out += ["#" * bl.level + " " + bl.text, ""]
        elif isinstance(bl, Para):
            out += [bl.text, ""]
        elif isinstance(bl, Figure):
            out += [f"![{_md_text(bl.alt)}]({FIGURES_DIR}/{bl.name})", ""]
        else:
            out.append("| " + " | ".join(_md_text(h) for h in bl.headers) + " |")
            align = [":---" if not c.numeric else "---:" for c in bl.rows[0]]
            out.append("|" + "|".join(align) + "|")
            for row in bl.rows:
                cells = [
                    _md_text(c.text) + "".join(f"[^{notes.ref(n)}]" for n in c.notes) for c in row
                ]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    if notes.ids:
        out += [f"## {SECTION_TITLES['notes']}", ""]
        out += [f"[^{i}]: {_md_text(r)}" for r, i in notes.ids.items()]
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:"DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
margin:0;background:#eef0f3;color:#1f2328;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:20px 28px 40px;background:#fff;min-height:100vh}
h1{font-size:26px;border-bottom:3px solid #1f2328;padding-bottom:6px;margin-bottom:4px}
h2{font-size:21px;margin-top:38px;border-bottom:1px solid #c8ccd1;padding-bottom:4px}
h3{font-size:17px;margin-top:28px;color:#24292f}
h4{font-size:15px;margin-top:22px;color:#3a3f45}
p{margin:6px 0 12px;max-width:1000px}
p.meta{color:#666;font-size:13px;margin-top:0}
p.note{color:#555;font-size:13px}
nav{font-size:14px;margin:8px 0 4px}
nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
.wrap{overflow-x:auto;margin:8px 0 10px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #d7dbe0;padding:4px 7px}
td{white-space:nowrap}
th{background:#f2f4f7;font-weight:600;text-align:center;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.txt{text-align:left}
td.long{white-space:normal;min-width:360px}
tbody tr:nth-child(even) td{background:#fafbfc}
tr.gold td{background:#fff4cc !important;font-weight:600}
tr.original td{color:#555;font-style:italic}
tr.heal td{background:#f3f9f1}
.skip{color:#8a8f96;cursor:help}
sup{font-size:10px;color:#0b5cad}
figure{margin:8px 0 14px}
figure img{max-width:100%;height:auto;border:1px solid #e4e7eb}
figcaption{font-size:12px;color:#666}
ol.notes{font-size:12px;color:#444}
"""


def render_html(blocks: list[Block], title: str, generated: str) -> str:
    """The self-contained HTML page of ``blocks`` (a nav bar links the scenario headings)."""
    notes = _Notes()
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
    ]
    if generated:
        out.append(f'<p class="meta">{e(generated)}</p>')
    scenarios = [bl for bl in blocks if isinstance(bl, Heading) and bl.level == 2]
    if scenarios:
        links = "".join(f'<a href="#{e(h.anchor)}">{e(h.text)}</a>' for h in scenarios)
        out.append(f"<nav>{links}</nav>")
    for bl in blocks:
        if isinstance(bl, Heading):
            out.append(f'<h{bl.level} id="{e(bl.anchor)}">{e(bl.text)}</h{bl.level}>')
        elif isinstance(bl, Para):
            out.append(f'<p class="note">{e(bl.text)}</p>')
        elif isinstance(bl, Figure):
            data = base64.b64encode(bl.data).decode("ascii")
            out.append(
                f'<figure><img alt="{e(bl.alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(bl.alt)}</figcaption></figure>"
            )
        else:
            rows = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in bl.headers) + "</tr>"]
            for kind, row in zip(bl.kinds, bl.rows, strict=True):
                tds = []
                for c in row:
                    cls = "num" if c.numeric else ("txt long" if len(c.text) > 60 else "txt")
                    if c.notes:
                        refs = "".join(
                            f'<sup><a href="#note-{notes.ref(n)}">{notes.ref(n)}</a></sup>'
                            for n in c.notes
                        )
                        tip = e(" | ".join(c.notes))
                        text = f'<span class="skip" title="{tip}">{e(c.text)}</span>{refs}'
                        if c.text != "—":
                            text = f'<span title="{tip}">{e(c.text)}</span>{refs}'
                    else:
                        text = e(c.text)
                    tds.append(f'<td class="{cls}">{text}</td>')
                cls_attr = f' class="{e(kind)}"' if kind else ""
                rows.append(f"<tr{cls_attr}>" + "".join(tds) + "</tr>")
            out.append('<div class="wrap"><table>' + "".join(rows) + "</table></div>")
    if notes.ids:
        out.append(f'<h2 id="notes">{e(SECTION_TITLES["notes"])}</h2><ol class="notes">')
        out += [f'<li id="note-{i}">{e(r)}</li>' for r, i in notes.ids.items()]
        out.append("</ol>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


__all__ = ["render_html", "render_md"]
