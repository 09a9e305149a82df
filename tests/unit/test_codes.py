"""SID strings: parsing is the inverse of formatting and rejects malformed input."""

import pytest

from sid.codes import format_sid, parse_sid


@pytest.mark.parametrize("codes", [[17, 203, 5], [0], list(range(30))])
def test_parse_inverts_format(codes):
    assert parse_sid(format_sid(codes)) == codes


@pytest.mark.parametrize("text", ["17,203,5", "17 203 5", "17-203-5", " 17, 203 ,5 "])
def test_parse_plain_code_lists(text):
    assert parse_sid(text) == [17, 203, 5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid SID string"),
        ("<a_1><c_2>", r"level letters \['a', 'c'\]"),
        ("<a_1>x", "invalid SID string"),
        ("<a_-1>", "invalid SID string"),
        ("1,a", "invalid SID string"),
        ("-1,2", "invalid SID string"),
    ],
)
def test_parse_rejects_malformed(text, message):
    with pytest.raises(ValueError, match=message):
        parse_sid(text)
