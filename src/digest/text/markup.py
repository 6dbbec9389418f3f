"""HTML from feeds: clean text for storage and plain-text mail, and sanitised HTML for the HTML digest."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

from digest.text.clean import repair_mojibake

# What a practice summary may keep in an HTML digest: structure and links, no scripts, styles or images.
ALLOWED_TAGS = {"p", "br", "ul", "ol", "li", "a", "em", "strong", "b", "i", "blockquote", "code", "pre", "h3", "h4"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}

_BLOCKS = {
    "p", "div", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dl",
    "h1", "h2", "h3", "h4", "h5", "h6", "figure", "header", "footer",
}  # fmt: skip
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


def sanitize_html(html: str) -> str:
    """HTML safe to show in a mail client: an allow-list of tags, http(s)/mailto links only, mojibake repaired."""
    cleaned = nh3.clean(
        repair_mojibake(html),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
    )
    return cleaned.strip()


def looks_like_html(text: str) -> bool:
    """True when text carries tags or entities (a feed description), not plain text."""
    return bool(re.search(r"<[a-zA-Z/!][^>]*>|&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", text))
