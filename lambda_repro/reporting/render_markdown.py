"""Markdown output of a report document (GitHub-flavoured tables, figures as relative links)."""

from __future__ import annotations

import pandas as pd

from lambda_repro.reporting.document import Block, Bullets, Details, Figure, Heading, Paragraph, Table, Verdict


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table; ``|`` in cells escaped, every value as text."""

    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_markdown(title: str, blocks: list[Block]) -> str:
    parts = [f"# {title}"]
    for block in blocks:
        parts.append(_block(block))
    return "\n\n".join(parts) + "\n"


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        caption = f"*{block.caption}*\n\n" if block.caption else ""
        return caption + markdown_table(block.frame)
    if isinstance(block, Figure):
        return f"![{block.caption}]({block.href})\n\n*{block.caption}*"
    if isinstance(block, Verdict):
        lines = "\n".join(f"> - {line}" for line in block.lines)
        return f"> **{block.title}**" + (f"\n>\n{lines}" if lines else "")
    if isinstance(block, Details):
        inner = "\n\n".join(_block(b) for b in block.blocks)
        return f"**{block.summary}**\n\n{inner}"
    raise TypeError(f"unknown block {type(block).__name__}")
