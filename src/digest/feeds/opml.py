"""OPML 2.0 lists of feeds, so a feed reader imports them all at once: every theme's feed and the feed of all
practices (/feeds.opml), or a subscriber's themes and their own feed (/feeds/me/TOKEN.opml). Pure: the outlines
in, the bytes out (byte-identical for the same outlines, so a hash of them is a strong ETag)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree

from digest.text.clean import strip_unsafe

# Feed readers (newsboat, NetNewsWire, Feedly, Thunderbird ...) take type="rss" for any feed, Atom included: OPML 2.0
# defines no other type for a subscription list.
SUBSCRIPTION = "rss"


@dataclass(frozen=True)
class Outline:
    """One feed: its title, the feed's URL and the web page it is the feed of."""

    title: str
    xml_url: str
    html_url: str


def opml(title: str, owner: str, docs_url: str, outlines: Sequence[Outline]) -> bytes:
    """The OPML document of these feeds, in their order."""
    root = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(root, "head")
    ElementTree.SubElement(head, "title").text = strip_unsafe(title)
    ElementTree.SubElement(head, "ownerName").text = strip_unsafe(owner)
    ElementTree.SubElement(head, "docs").text = docs_url
    body = ElementTree.SubElement(root, "body")
    for outline in outlines:
        name = strip_unsafe(outline.title)
        ElementTree.SubElement(
            body,
            "outline",
            {"type": SUBSCRIPTION, "text": name, "title": name, "xmlUrl": outline.xml_url, "htmlUrl": outline.html_url},
        )
    ElementTree.indent(root)
    text: bytes = ElementTree.tostring(root, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + text + b"\n"
