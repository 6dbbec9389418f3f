"""Feed HTML: clean text for storage and plain-text mail, sanitised HTML for the HTML digest."""

from __future__ import annotations

from digest.text.markup import html_to_text, sanitize_html


def test_text_keeps_paragraphs_and_list_items_as_lines() -> None:
    html = (
        "<div><p>One &amp; <em>two</em>.</p><p>Line<br>break</p><ol><li>first</li><li> </li><li>second</li></ol></div>"
    )
    assert html_to_text(html) == "One & two.\n\nLine\nbreak\n\n- first\n- second"


def test_text_drops_scripts_styles_and_entities() -> None:
    html = "<style>p{color:red}</style><p>caf&eacute; &#8211; &#x2019;s&nbsp;end</p><script>var x = 1;</script>"
    assert html_to_text(html) == "café – ’s end"


def test_sanitize_keeps_structure_and_links_only() -> None:
    html = (
        '<p style="color:red" onclick="x()">Hi <a href="javascript:alert(1)">bad</a> '
        '<a href="https://ok.example/">ok</a></p><iframe src="https://x"></iframe><img src="https://t/p.gif">'
    )
    assert sanitize_html(html) == (
        '<p>Hi <a rel="noopener noreferrer">bad</a> <a href="https://ok.example/" rel="noopener noreferrer">ok</a></p>'
    )


def test_sanitize_repairs_mojibake() -> None:
    assert sanitize_html("<p>Chennaiís code</p>") == "<p>Chennai’s code</p>"
