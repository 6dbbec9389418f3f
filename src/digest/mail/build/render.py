"""Rendering: frozen digest content -> subject, text and HTML bodies, through Jinja2 templates. No I/O."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import css_inline
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemBytecodeCache,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)
from markupsafe import Markup

from digest.errors import DigestError
from digest.mail.plan.compose import DigestContent
from digest.text import i18n
from digest.text.languages import autonym, text_attributes
from digest.text.markup import sanitize_html


def default_templates() -> Path:
    """templates/email of the checkout (where operators edit them), else the copy the wheel ships in the package."""
    checkout = Path(__file__).resolve().parents[4] / "templates" / "email"
    if (checkout / "digest.txt").is_file():
        return checkout
    return Path(str(files("digest") / "templates" / "email"))


@dataclass(frozen=True)
class Links:
    """The absolute links a digest carries, all under the configured base URL (pages the web app serves).

    ``unsubscribe``, ``manage`` and ``view`` hold signed tokens for this recipient; the others are public.
    """

    base_url: str
    unsubscribe: str
    manage: str = ""
    # The digest's archived copy on the web ("view in your browser"); empty in a preview.
    view: str = ""
    # The reader's language: links to the site's public pages carry it (?lang=), so a French reader lands on
    # French pages whatever their browser asks (the pages their signed links open speak it already).
    language: str = ""

    def _in_language(self, url: str) -> str:
        return f"{url}?lang={self.language}" if self.language else url

    def feed(self, slug: str) -> str:
        return f"{self.base_url}/feeds/{slug}.atom"

    def practice(self, uid: str) -> str:
        """The practice's page (its title, summary, themes and source link)."""
        return self._in_language(f"{self.base_url}/practices/{uid}")

    def target(self, url: str | None, uid: str) -> str:
        """Where a practice's title links: its source when it has one, else its page here."""
        return url or self.practice(uid)

    def theme(self, slug: str) -> str:
        """The theme's page: every practice of the theme, newest first (served by the web app)."""
        return self._in_language(f"{self.base_url}/themes/{slug}")


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _compiled() -> FileSystemBytecodeCache | None:
    """Jinja's cache of compiled templates, in its per-user folder; None where no safe folder can be had (each run
    then compiles them, as it would without)."""
    try:
        return FileSystemBytecodeCache()
    except (OSError, RuntimeError):
        return None


@lru_cache(maxsize=4 * len(i18n.LANGUAGES))
def environment(templates_dir: str, language: str = i18n.DEFAULT) -> Environment:
    """The templates of ``templates_dir`` writing in ``language`` (their ``_()`` and ``ngettext()`` read its
    catalog); a template the folder lacks (a notice added since it was copied) comes from the shipped ones."""
    env = Environment(
        extensions=["jinja2.ext.i18n"],
        loader=ChoiceLoader([FileSystemLoader(templates_dir), FileSystemLoader(default_templates())]),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Compiled templates kept between runs (Jinja's per-user cache folder; a changed template is compiled
        # again): compiling them was a tenth of a second of every `digest send`, before anything was sent.
        bytecode_cache=_compiled(),
    )
    # Summary HTML was sanitised at ingest; cleaning it again here keeps a bad row from reaching a mail client.
    env.filters["sanitized"] = lambda html: Markup(sanitize_html(str(html)))
    env.filters["paragraphs"] = lambda text: [p for p in str(text).split("\n\n") if p.strip()]
    env.filters["teaser"] = teaser
    env.filters["autonym"] = autonym
    env.filters["text_attributes"] = lambda tag: Markup(text_attributes(tag))
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["language"] = language
    return env


def teaser(text: str, limit: int = 280) -> str:
    """The summary on one line, cut at a word before ``limit`` characters with an ellipsis when longer."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0] if " " in flat[: limit - 1] else flat[: limit - 1]
    return cut.rstrip(" ,;:.-–—") + "…"


class TemplateProblem(DigestError):
    """A template that cannot be read or rendered: the message names the template and its line."""


def _located(error: TemplateError, fallback: str, templates_dir: str) -> TemplateProblem:
    """The template and line a Jinja error happened at: from a syntax error, else from the traceback."""
    name = getattr(error, "filename", None) or getattr(error, "name", None) or fallback
    line = getattr(error, "lineno", None)
    if line is None:
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            if frame.filename.endswith((".html", ".txt")):
                name, line = frame.filename, frame.lineno
                break
    where = f"{name}" if line is None else f"{name}, line {line}"
    return TemplateProblem(
        f"template {where}: {type(error).__name__}: {error.message or error}",
        f"fix the template in {templates_dir} (see the README, Templates); `digest preview EMAIL` shows the result",
    )


def _render(folder: str, name: str, context: dict[str, object], language: str = i18n.DEFAULT) -> str:
    try:
        with i18n.using(language):
            return environment(folder, language).get_template(name).render(context)
    except TemplateError as e:
        raise _located(e, name, folder) from e


# Gmail clips an HTML part past about 102 KB, and the footer (unsubscribe) is what gets cut: stay well below.
HTML_BUDGET = 100_000
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def render_digest(
    content: DigestContent,
    links: Links,
    templates_dir: str | Path | None = None,
    subject: str | None = None,
    postal_address: str = "",
) -> RenderedDigest:
    """Render a digest (with the subject frozen when it was planned, if given); source text is autoescaped, the
    HTML's CSS inlined (media queries for dark mode and small screens stay in its <style>).

    The HTML part stays under HTML_BUDGET bytes: when a digest would pass it, fewer practices per theme are
    listed and the rest counted with the link to see them all (a TemplateProblem for a broken template)."""
    folder = str(templates_dir or default_templates())
    subject = subject or content.subject
    links = replace(links, language=links.language or content.language)
    per_section = max((len(s.practices) for s in content.sections), default=0)
    shown = content
    while True:
        context = {"digest": shown, "links": links, "subject": subject, "postal_address": postal_address}
        html = _inliner.inline(_render(folder, "digest.html", context, content.language))
        if len(html.encode()) <= HTML_BUDGET or per_section <= 1:
            break
        per_section = per_section * 2 // 3
        shown = content.listing_at_most(per_section)
    return RenderedDigest(subject=subject, text=_render(folder, "digest.txt", context, content.language), html=html)


def check_templates(templates_dir: str | Path | None = None) -> None:
    """Compile every mail template; a TemplateProblem naming the template and line for the first that fails."""
    folder = str(templates_dir or default_templates())
    for name in (
        "digest.txt",
        "digest.html",
        "confirm.txt",
        "confirm.html",
        "already-subscribed.txt",
        "already-subscribed.html",
        "welcome.txt",
        "welcome.html",
        "notice.html",
    ):
        try:
            environment(folder).get_template(name)
        except TemplateError as e:
            raise _located(e, name, folder) from e


def render_notice(
    name: str, context: dict[str, object], templates_dir: str | Path | None = None, language: str = i18n.DEFAULT
) -> tuple[str, str]:
    """The text and HTML bodies of a notice (``name``.txt and ``name``.html: confirm, already-subscribed)."""
    folder = str(templates_dir or default_templates())
    text = _render(folder, f"{name}.txt", context, language)
    return text, _inliner.inline(_render(folder, f"{name}.html", context, language))
