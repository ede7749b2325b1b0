"""Self-contained HTML output of a report document: inline CSS, figures embedded as base64 PNG.

The page references nothing outside itself (no scripts, stylesheets, fonts or images by
URL), so it opens offline and survives being mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html

import pandas as pd

from lambda_repro.reporting.document import Block, Bullets, Details, Figure, Heading, Paragraph, Table, Verdict

CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 24px 32px; color: #1d2329; line-height: 1.45; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; border-bottom: 1px solid #d8dde3; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p { margin: 6px 0; }
.verdict { border-radius: 8px; padding: 14px 20px; margin: 14px 0; border-left: 10px solid; }
.verdict .title { font-size: 22px; font-weight: 700; }
.verdict ul { margin: 6px 0 0; padding-left: 22px; }
.good { background: #e7f6ec; border-color: #1e8e3e; }
.warn { background: #fdf3e1; border-color: #d98a00; }
.neutral { background: #eef1f5; border-color: #6b7785; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 14px; }
th, td { border: 1px solid #d8dde3; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; }
td { font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-style: italic; color: #4a5560; padding-bottom: 4px; }
figure { margin: 12px 0; }
figure img { max-width: 100%; border: 1px solid #e3e7ec; }
figcaption { font-size: 13px; color: #4a5560; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
"""


def render_html(title: str, blocks: list[Block]) -> str:
    body = "\n".join(_block(b) for b in blocks)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def html_table(frame: pd.DataFrame, caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>"


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return html_table(block.frame, block.caption)
    if isinstance(block, Figure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        alt = html.escape(block.caption)
        return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'
    if isinstance(block, Verdict):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in block.lines)
        return (
            f'<div class="verdict {html.escape(block.kind)}"><div class="title">{html.escape(block.title)}</div>'
            + (f"<ul>{items}</ul>" if items else "")
            + "</div>"
        )
    if isinstance(block, Details):
        inner = "\n".join(_block(b) for b in block.blocks)
        return f"<details><summary>{html.escape(block.summary)}</summary>\n{inner}\n</details>"
    raise TypeError(f"unknown block {type(block).__name__}")
