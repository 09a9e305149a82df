"""Item text built from catalog fields for the text encoder."""

from __future__ import annotations

import html
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["clean_text", "render_item_text", "template_fields"]

_WHITESPACE = re.compile(r"\s+")


def clean_text(value: Any) -> str:
    """Decode HTML entities (``&amp;``, ``&#39;``) and collapse whitespace.

    Lists, such as a category path, are joined with ``" > "``. ``None`` gives ``""``.
    """
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, str)):
        items = value.tolist() if hasattr(value, "tolist") else value
        return " > ".join(part for part in (clean_text(item) for item in items) if part)
    text = html.unescape(html.unescape(str(value)))  # some rows are escaped twice: &amp;amp;
    return _WHITESPACE.sub(" ", text).strip()


def template_fields(template: Sequence[str]) -> list[str]:
    """Return the field names that the template parts refer to, in order of appearance."""
    names: list[str] = []
    for part in template:
        for _, field, _, _ in string.Formatter().parse(part):
            if field and field not in names:
                names.append(field)
    return names


def render_item_text(
    record: Mapping[str, Any],
    template: Sequence[str],
    *,
    separator: str = ". ",
    missing_values: Iterable[str] = ("",),
) -> str:
    """Render the template parts whose fields are all present and join them.

    A part such as ``"Brand: {brand}"`` is dropped when ``brand`` is missing or one of
    ``missing_values`` (case-insensitive), so an item without a title is still described
    by its other fields. Returns ``""`` when no part can be rendered.
    """
    missing = {value.strip().lower() for value in missing_values}
    rendered = []
    for part in template:
        values = {}
        for field in template_fields([part]):
            text = clean_text(record.get(field))
            if text.lower() in missing:
                break
            values[field] = text
        else:
            rendered.append(part.format(**values))
    return separator.join(rendered)
