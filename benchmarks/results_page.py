"""Shared writer of benchmarks/RESULTS.md: each script owns one marked section of the page."""

from __future__ import annotations

import pathlib

RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS.md"


def write_section(lines: list[str], *, start: str, end: str, path: pathlib.Path = RESULTS) -> None:
    """Replace the block between the ``start`` and ``end`` markers with ``lines``.

    ``lines`` must begin with ``start`` and end with ``end``. The block is appended when the
    page has no such markers yet; every other section stays as it is.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = "\n".join(lines)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
