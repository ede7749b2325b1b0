"""The files ``prepare`` skipped, converted or ignored, one line each, for the terminal.

The manifest keeps the full list; the terminal shows the first ``limit`` and says how many
more there are and where they are all listed.
"""

from __future__ import annotations

DEFAULT_LIMIT = 50


def problem_lines(problems: list[dict], manifest_path: str, limit: int = DEFAULT_LIMIT) -> list[str]:
    """``"skipped: <path>: <problem>"`` per problem, cut after ``limit`` with a count and the manifest named."""
    lines = [f"{p['action']}: {p['path']}: {p['problem']}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more (all {len(problems)} are listed in {manifest_path})")
    return lines
