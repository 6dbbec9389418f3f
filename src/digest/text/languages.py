"""Language tags (BCP 47, RFC 5646) as sources give them: `es`, `fr-CA`, `pt_BR`, ` EN `: read, checked and written
the one way (language lower case, region upper case, script title case). Nothing here guesses a language: a
source that says none leaves it unknown."""

from __future__ import annotations

import re
from functools import lru_cache

# language (2-3 letters, or 4-8 registered ones), then subtags of 1-8 letters or digits: the shape of a tag, which
# is what a source can get wrong (a name, "English", passes the shape only when it is a tag's length).
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def language_tag(value: object) -> str | None:
    """The tag in its usual form, or None when ``value`` is empty or not a language tag (the caller says which)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _TAG.fullmatch(text):
        return None
    parts = re.split(r"[-_]", text)
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha() or len(part) == 3 and part.isdigit():
            out.append(part.upper())  # a region: ES, 419
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())  # a script: Latn
        else:
            out.append(part.lower())
    return "-".join(out)


def first_tag(header: str | None) -> str | None:
    """The language of an HTTP Content-Language header naming one (a list of several says no one of them)."""
    if not header or "," in header:
        return None
    return language_tag(header)


@lru_cache(maxsize=1024)
def parse_tags(text: str | None) -> frozenset[str]:
    """The tags of a space-separated list as stored ("es fr"); empty: every language. Read once per distinct
    value: planning asks for every subscriber, and most share a handful."""
    return frozenset(t for t in (language_tag(v) for v in (text or "").split()) if t)


def wanted(language: str | None, chosen: frozenset[str]) -> bool:
    """Whether a practice in ``language`` belongs in a digest restricted to ``chosen`` (empty: no restriction).
    A tag matches its own subtags ("es" takes "es-MX"); a practice whose language is unknown always belongs: what
    the source does not say is not a reason to leave it out."""
    if not chosen or language is None:
        return True
    return any(language == c or language.startswith(c + "-") for c in chosen)


def autonym(tag: str) -> str:
    """A language's name in itself, as its readers look for it ("Español", "Français"); the tag when unknown."""
    from babel import Locale, UnknownLocaleError

    try:
        name = Locale.parse(tag.replace("-", "_")).get_display_name(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return tag
    return name[:1].upper() + name[1:] if name else tag


# Scripts written right to left (ISO 15924): a tag naming one decides, whatever its language usually uses.
_RTL_SCRIPTS = frozenset({"Arab", "Hebr", "Syrc", "Thaa", "Nkoo", "Adlm", "Rohg", "Mand", "Samr"})
_LTR_SCRIPTS = frozenset({"Latn", "Cyrl", "Grek", "Deva", "Hans", "Hant", "Jpan", "Kore"})


@lru_cache(maxsize=256)
def direction(tag: str | None) -> str:
    """The writing direction of text in ``tag``, for HTML's ``dir``: "rtl" (ar, he, fa, ur, ...), "ltr", or "auto"
    when the language is unknown, so the browser takes it from the text's first strong character instead of the
    page's (an Arabic title in a French digest would otherwise put "(2024)" and "!" at the wrong ends)."""
    if not tag:
        return "auto"
    from babel import Locale, UnknownLocaleError

    script = next((p for p in tag.split("-")[1:] if len(p) == 4 and p.isalpha()), None)
    if script in _RTL_SCRIPTS:
        return "rtl"
    if script in _LTR_SCRIPTS:
        return "ltr"
    try:
        return "rtl" if Locale.parse(tag.split("-")[0]).text_direction == "rtl" else "ltr"
    except (UnknownLocaleError, ValueError):
        return "auto"


def text_attributes(tag: str | None) -> str:
    """` lang="…" dir="…"` for an element holding a practice's text (only ` dir="auto"` when the language is
    unknown). A tag is letters, digits and hyphens (language_tag), so nothing here needs escaping."""
    shown = language_tag(tag) if tag else None
    return f' lang="{shown}" dir="{direction(shown)}"' if shown else ' dir="auto"'
