"""The languages people read this service in (English, French, Spanish): gettext catalogs under digest/locales,
read with Babel, and the one place that knows which language is being written now.

Pages (Flask-Babel), mails (a Jinja environment per language) and the messages the domain raises at people
("Choose at least one theme.") all translate through the catalogs here. The language of the moment is a context
variable: a web request sets it to the visitor's or subscriber's, a mail is rendered inside ``using(theirs)``;
the command line stays English. Practices keep the language their source wrote them in (digest.text.languages).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_time
from babel.support import NullTranslations, Translations

from digest.errors import DigestError

# The languages of the interface and the mails; the first is the source language of every message.
LANGUAGES = ("en", "fr", "es")
DEFAULT = LANGUAGES[0]
LOCALES = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"

_current: ContextVar[str] = ContextVar("digest_language", default=DEFAULT)


class UnknownLanguage(DigestError, ValueError):
    """A language code that is not one of LANGUAGES: the message names the code and the choices. A DigestError, so
    each door answers it as any refusal (the CLI's two lines, the web's 400)."""

    def __init__(self, code: object) -> None:
        # In the language of the moment: a manage page's refusal is in its reader's language, the CLI's in English.
        choices = ", ".join(LANGUAGES)
        super().__init__(
            gettext("%(code)r is not a language of this service: use one of %(choices)s", code=code, choices=choices)
        )


def supported(code: object) -> str:
    """``code`` as one of LANGUAGES ("FR", "fr-CA", "es_MX" -> "fr", "es"); UnknownLanguage otherwise."""
    text = str(code or "").strip().replace("_", "-").lower()
    base = text.split("-", 1)[0]
    if base in LANGUAGES and (text == base or len(text) > len(base) + 1):
        return base
    raise UnknownLanguage(code)


def choose(preferred: Iterable[str], default: str = DEFAULT) -> str:
    """The first of ``preferred`` (most wanted first, as an Accept-Language header orders them) this service
    speaks, else ``default``. Anything unreadable in the list is passed over, never an error."""
    for code in preferred:
        try:
            return supported(code)
        except UnknownLanguage:
            continue
    return default


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> NullTranslations:
    """The compiled catalog of ``language`` (English: the messages as written). Pages and mails read this one
    loader. A checkout whose .mo was not built (make builds it) or is older than its .po is read from the .po:
    never English, or last week's words, by mistake."""
    if language not in LANGUAGES or language == DEFAULT:
        return NullTranslations()
    folder = LOCALES / language / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if po.is_file() and (not mo.is_file() or mo.stat().st_mtime < po.stat().st_mtime):
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        compiled = io.BytesIO()
        with po.open("rb") as source:
            write_mo(compiled, read_po(source, locale=language))
        compiled.seek(0)
        return Translations(compiled, DOMAIN)
    return Translations.load(str(LOCALES), [language], DOMAIN)


def current() -> str:
    return _current.get()


@contextmanager
def using(language: str) -> Iterator[None]:
    """Write in ``language`` inside the block (mails to one subscriber, a page for one visitor)."""
    token = _current.set(language)
    try:
        yield
    finally:
        _current.reset(token)


def set_current(language: str) -> None:
    """For a whole web request (the context variable is the request's own)."""
    _current.set(language)


def gettext(message: str, **variables: object) -> str:
    """``message`` in the current language, its ``%(name)s`` placeholders filled from ``variables``."""
    text = translations(current()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    """The form of ``n`` in the current language (the catalog's plural rule), ``%(num)s`` being ``n``."""
    text = translations(current()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def when(moment: datetime, language: str | None = None) -> str:
    """A date and time as people of ``language`` write it: "Monday, December 7, 2026 at 8:00 AM", "lundi
    7 décembre 2026 à 08:00", "lunes, 7 de diciembre de 2026 a las 8:00". ``moment`` in the reader's timezone."""
    language = language or current()
    with using(language):
        # By the hour's plural: Spanish says "a la 1:00" but "a las 8:00".
        return ngettext(
            "%(date)s at %(time)s",
            "%(date)s at %(time)s",
            moment.hour,
            date=format_date(moment, "full", locale=language),
            time=format_time(moment, "short", locale=language),
        )


def day(moment: date, language: str | None = None) -> str:
    """A day written out: "Monday, December 7, 2026", "lundi 7 décembre 2026"."""
    return format_date(moment, "full", locale=language or current())


def short_day(moment: date, language: str | None = None) -> str:
    """A day in a list: "Dec 7, 2026", "7 déc. 2026"."""
    return format_date(moment, "medium", locale=language or current())


def weekday_names(language: str | None = None) -> list[str]:
    """Monday to Sunday in ``language``, capitalised as a menu shows them."""
    names = Locale.parse(language or current()).days["stand-alone"]["wide"]
    return [names[i][:1].upper() + names[i][1:] for i in range(7)]


def weekday_in_sentence(index: int, language: str | None = None) -> str:
    """Weekday ``index`` (0 is Monday) as a sentence writes it: "Monday", "lundi", "lunes"."""
    return str(Locale.parse(language or current()).days["format"]["wide"][index])
