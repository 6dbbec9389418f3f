"""Rendering: frozen digest content -> subject, text and HTML bodies, through Jinja2 templates. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from digest.mail.compose import DigestContent
from digest.text.markup import sanitize_html


def default_templates() -> Path:
    """templates/email of the checkout (where operators edit them), else the copy the wheel ships in the package."""
    checkout = Path(__file__).resolve().parents[3] / "templates" / "email"
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

    def feed(self, slug: str) -> str:
        return f"{self.base_url}/feeds/{slug}.atom"

    def practice(self, uid: str) -> str:
        """The practice's page (its title, summary, themes and source link)."""
        return f"{self.base_url}/practices/{uid}"

    def target(self, url: str | None, uid: str) -> str:
        """Where a practice's title links: its source when it has one, else its page here."""
        return url or self.practice(uid)

    def theme(self, slug: str) -> str:
        """The theme's page: every practice of the theme, newest first (served by the web app)."""
        return f"{self.base_url}/themes/{slug}"


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=4)
def environment(templates_dir: str) -> Environment:
    """The templates of ``templates_dir``; a template it lacks (a notice added since it was copied) comes from
    the shipped ones."""
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(templates_dir), FileSystemLoader(default_templates())]),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # Summary HTML was sanitised at ingest; cleaning it again here keeps a bad row from reaching a mail client.
    env.filters["sanitized"] = lambda html: Markup(sanitize_html(str(html)))
    env.filters["paragraphs"] = lambda text: [p for p in str(text).split("\n\n") if p.strip()]
    return env


def render_digest(
    content: DigestContent, links: Links, templates_dir: str | Path | None = None, subject: str | None = None
) -> RenderedDigest:
    """Render a digest (with the subject frozen when it was planned, if given); source text is autoescaped."""
    env = environment(str(templates_dir or default_templates()))
    subject = subject or content.subject
    context = {"digest": content, "links": links, "subject": subject}
    return RenderedDigest(
        subject=subject,
        text=env.get_template("digest.txt").render(context),
        html=env.get_template("digest.html").render(context),
    )


def render_notice(name: str, context: dict[str, object], templates_dir: str | Path | None = None) -> tuple[str, str]:
    """The text and HTML bodies of a notice (``name``.txt and ``name``.html: confirm, already-subscribed)."""
    env = environment(str(templates_dir or default_templates()))
    return env.get_template(f"{name}.txt").render(context), env.get_template(f"{name}.html").render(context)
