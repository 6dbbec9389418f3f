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


def test_sanitize_leaves_mojibake_to_the_parser() -> None:
    """Repair is the parser's call, per document (only text that came as Unicode); sanitising never guesses."""
    assert sanitize_html("<p>Chennaiís code</p>") == "<p>Chennaiís code</p>"


def test_relative_links_resolve_against_the_base_and_fragments_are_dropped() -> None:
    html = '<p><a href="/node/12">more</a> <a href="#comment-3">3 comments</a> <a href="x.html">x</a></p>'
    assert sanitize_html(html, "https://site.example/theme/7") == (
        '<p><a href="https://site.example/node/12" rel="noopener noreferrer">more</a> '
        '<a rel="noopener noreferrer">3 comments</a> '
        '<a href="https://site.example/theme/x.html" rel="noopener noreferrer">x</a></p>'
    )
    # With no base, nothing relative survives (a mail client would have nowhere to go).
    assert "href" not in sanitize_html('<a href="/node/12">more</a>')
