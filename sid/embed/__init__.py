"""Item text and embedding encoders."""

from sid.embed.encoder import TextEncoder, load_text_encoder
from sid.embed.text import clean_text, render_item_text, template_fields

__all__ = ["TextEncoder", "clean_text", "load_text_encoder", "render_item_text", "template_fields"]
