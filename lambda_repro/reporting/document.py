"""A report as a list of blocks, independent of its output format (Markdown, HTML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG beside the report; ``path`` is absolute or relative to the working directory, ``href`` to the report."""

    path: Path
    href: str
    caption: str


@dataclass(frozen=True)
class Verdict:
    """The headline: ``kind`` picks the colour (``good``, ``warn``, ``neutral``)."""

    kind: str
    title: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Details:
    """Collapsed in HTML (``<details>``), a plain subsection in Markdown."""

    summary: str
    blocks: tuple = field(default_factory=tuple)


Block = Heading | Paragraph | Bullets | Table | Figure | Verdict | Details
