"""HTML from feeds: clean text for storage and plain-text mail, and sanitised HTML for the HTML digest."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin

import nh3

from digest.text.clean import strip_unsafe
from digest.text.links import safe_link

# What a practice summary may keep in an HTML digest: structure and links, no scripts, styles or images.
ALLOWED_TAGS = {"p", "br", "ul", "ol", "li", "a", "em", "strong", "b", "i", "blockquote", "code", "pre", "h3", "h4"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}

_BLOCKS = {
    "p",
    "div",
    "section",
    "article",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "figure",
    "header",
    "footer",
}
_LINES = {"li", "tr", "dt", "dd", "br"}
_SKIPPED = {"script", "style", "template", "head", "title", "noscript"}
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")


class _TextCollector(HTMLParser):
    """Walks HTML and collects paragraphs (blocks) made of lines (list items, table rows, <br>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[list[str]] = [[]]
        self.line: list[str] = []
        self.skipping = 0

    def end_line(self) -> None:
        text = _SPACES.sub(" ", "".join(self.line)).strip()
        self.line = []
        if text and text != "-":  # an empty list item leaves only its bullet
            self.paragraphs[-1].append(text)

    def end_paragraph(self) -> None:
        self.end_line()
        if self.paragraphs[-1]:
            self.paragraphs.append([])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.end_paragraph()
        elif tag in _LINES:
            self.end_line()
            if tag == "li":
                self.line.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.end_paragraph()
        elif tag in _LINES:
            self.end_line()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" or tag in _BLOCKS:
            self.end_line()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.line.append(data)


def html_to_text(html: str) -> str:
    """Text of an HTML fragment: no tags, no entities; paragraphs split by a blank line, list items one per line."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    collector.end_paragraph()
    return "\n\n".join("\n".join(lines) for lines in collector.paragraphs if lines)


def _link_filter(base: str | None) -> Callable[[str, str, str], str | None]:
    """Keep a link only as an absolute http(s) or mailto URL: resolved against ``base``; fragment-only dropped."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute != "href":
            return value
        value = value.strip()
        if not value or value.startswith("#"):
            return None  # a link to a place on the source's page leads nowhere in a mail; the text stays
        if value.lower().startswith("mailto:"):
            return value
        resolved = urljoin(base, value) if base else value
        return safe_link(resolved)

    return keep


def sanitize_html(html: str, base: str | None = None) -> str:
    """HTML safe to show in a mail client: an allow-list of tags; links only absolute http(s) or mailto.

    Relative links are resolved against ``base`` (the entry's xml:base, its link, or the feed's); without one,
    or when only a fragment, the link is dropped and its text stays.
    """
    cleaned = nh3.clean(
        strip_unsafe(html),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        attribute_filter=_link_filter(base),
    )
    return cleaned.strip()


def looks_like_html(text: str) -> bool:
    """True when text carries tags or entities (a feed description), not plain text."""
    return bool(re.search(r"<[a-zA-Z/!][^>]*>|&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", text))
