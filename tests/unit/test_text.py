import numpy as np

from sid.catalog import parse_category_list
from sid.embed.text import clean_text, render_item_text, template_fields

TEMPLATE = ["{title}", "Brand: {brand}", "Categories: {categories}"]


def test_clean_text_decodes_html_entities():
    assert clean_text("Dr. Scholl&#39;s Gel &amp; Foam") == "Dr. Scholl's Gel & Foam"


def test_clean_text_decodes_double_escaped_entities():
    assert clean_text("Salt &amp;amp; Pepper") == "Salt & Pepper"


def test_clean_text_joins_category_path():
    assert clean_text(np.array(["Beauty", "Makeup", "Face"])) == "Beauty > Makeup > Face"


def test_clean_text_none_and_nan():
    assert clean_text(None) == ""
    assert clean_text(float("nan")) == ""


def test_render_all_fields():
    record = {"title": "OPI Nail Lacquer", "brand": "OPI", "categories": ["Beauty", "Nails"]}
    assert render_item_text(record, TEMPLATE) == "OPI Nail Lacquer. Brand: OPI. Categories: Beauty > Nails"


def test_render_without_title_uses_other_fields():
    record = {"title": None, "brand": "OPI", "categories": ["Beauty"]}
    assert render_item_text(record, TEMPLATE) == "Brand: OPI. Categories: Beauty"


def test_render_treats_missing_markers_as_missing():
    record = {"title": "Gel", "brand": "Unknown", "categories": []}
    assert render_item_text(record, TEMPLATE, missing_values=["", "unknown"]) == "Gel"


def test_render_returns_empty_when_no_field_left():
    assert render_item_text({"title": "", "brand": None, "categories": []}, TEMPLATE) == ""


def test_template_fields_in_order():
    assert template_fields(TEMPLATE + ["{title} by {brand}"]) == ["title", "brand", "categories"]


def test_parse_category_list_recbole_format():
    assert parse_category_list("'Beauty', 'Hair Care', 'Creams, Gels & Lotions'") == [
        "Beauty", "Hair Care", "Creams, Gels & Lotions",
    ]


def test_parse_category_list_double_quoted_names():
    assert parse_category_list("'Beauty', \"Men's\"") == ["Beauty", "Men's"]


def test_parse_category_list_empty():
    assert parse_category_list("") == []
    assert parse_category_list(None) == []
