"""JSON and CSV exports from other systems: one practice per object or row, each naming its own themes."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from digest.errors import SourceError
from digest.ingest.items import ParsedItem, ParsedSource, Problem
from digest.text.clean import clean_line, clean_paragraphs, reads_like_sentence, repair_mojibake
from digest.text.languages import language_tag

FIELDS = ("id", "title", "summary", "url", "themes", "submitted_by", "published", "language", "translation_of")


class _BadField(ValueError):
    """A field of the wrong type: the record is left out with this reason."""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false"}.get(type(value), type(value).__name__)


def _text(record: Mapping[str, Any], key: str, numbers: bool = False) -> str:
    """A text field; None is empty. Numbers only where they are natural (ids); anything else is an error."""
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _BadField(f"{key} must be text, found {_kind(value)}")


def _themes(value: Any) -> list[str] | None:
    """A list of names, or one string of `;`-separated names (empty pieces skipped); None when it is neither,
    or when a listed name is empty once cleaned."""
    if value is None:
        return []
    if isinstance(value, str):
        return [clean_line(n) for n in value.split(";") if clean_line(n)]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = [clean_line(n) for n in value]
        return names if all(names) else None
    return None


def _references(value: Any) -> list[str]:
    """`translation_of`: the id or URL of the practice this one translates; several as a list or split by `;`."""
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, str):
        return [v.strip() for v in value.split(";") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return [str(v).strip() for v in value if str(v).strip()]
    raise _BadField(f"translation_of must be an id or URL (or a list of them), found {_kind(value)}")


def _published(value: str) -> datetime | None:
    if not value.strip():
        return None
    when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _item(
    record: Mapping[str, Any], where: str, problems: list[Problem], rejected: list[Problem], repair: bool
) -> None | ParsedItem:
    """One record as an item, or None (with the reason in rejected)."""

    def fix(text: str) -> str:
        return repair_mojibake(text) if repair else text

    try:
        ident = _text(record, "id", numbers=True).strip()
        title = fix(clean_line(_text(record, "title")))
        summary = fix(clean_paragraphs(_text(record, "summary")))
        url = _text(record, "url").strip() or None
        submitted_by = fix(clean_line(_text(record, "submitted_by"))) or None
        published_text = _text(record, "published")
        language_text = _text(record, "language").strip()
        translations = _references(record.get("translation_of"))
    except _BadField as e:
        rejected.append(Problem(where, clean_line(str(record.get("title", "")))[:80], f"{e}; left out"))
        return None
    if not title:
        rejected.append(Problem(where, ident, "no title; left out (give every record a title)"))
        return None
    themes = _themes(record.get("themes"))
    if themes is None:
        rejected.append(
            Problem(where, title, "themes must be a list of names or one string of names split by ';', none empty")
        )
        return None
    try:
        published = _published(published_text)
    except ValueError:
        rejected.append(Problem(where, title, f"published {published_text!r} is not an ISO 8601 date"))
        return None
    if reads_like_sentence(title):
        problems.append(Problem(where, title[:60], "title reads like a sentence; check the record"))
    if not summary:
        problems.append(Problem(where, title, "empty summary"))
    language = language_tag(language_text)
    if language_text and language is None:
        problems.append(
            Problem(
                where, title, f"language {language_text[:40]!r} is not a language tag such as es or fr-CA; left unknown"
            )
        )
    return ParsedItem(
        title=title,
        summary=summary,
        where=where,
        submitted_by=submitted_by,
        url=url,
        guid=ident or None,
        published_at=published,
        themes=themes,
        language=language,
        translations=translations,
    )


def _parse_records(records: Iterable[tuple[str, Any]], source: str, repair: bool) -> ParsedSource:
    items: list[ParsedItem] = []
    problems: list[Problem] = []
    rejected: list[Problem] = []
    unknown_seen: set[str] = set()
    for where, record in records:
        if not isinstance(record, Mapping):
            rejected.append(Problem(where, "", f"expected an object with a title, found {type(record).__name__}"))
            continue
        unknown = {str(k) for k in record if k not in FIELDS} - unknown_seen
        if unknown:
            unknown_seen |= unknown
            problems.append(Problem(where, "", f"ignored unknown field(s): {', '.join(sorted(unknown))}"))
        item = _item(record, where, problems, rejected, repair)
        if item is not None:
            items.append(item)
    return ParsedSource(theme=None, items=items, problems=problems, rejected=rejected)


def parse_json(text: str, source: str, repair: bool = True) -> ParsedSource:
    """A JSON list of practice objects, or {"practices": [...]}."""
    try:
        data = json.loads(text)
    except RecursionError as e:
        raise SourceError(
            f"{source}: JSON nested too deeply to read (more than about {sys.getrecursionlimit()} levels)",
            "nothing from this file was stored; an export of practices is a list of flat objects",
        ) from e
    except json.JSONDecodeError as e:
        raise SourceError(
            f"{source}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
            "nothing from this file was stored; fix the JSON (is the file complete?)",
        ) from e
    if isinstance(data, dict) and isinstance(data.get("practices"), list):
        data = data["practices"]
    if not isinstance(data, list):
        raise SourceError(
            f'{source}: expected a list of practices or {{"practices": [...]}}, found {type(data).__name__}',
            "export the practices as a JSON array of objects",
        )
    return _parse_records(((f"object {n}", record) for n, record in enumerate(data, 1)), source, repair)


def parse_csv(text: str, source: str, repair: bool = True) -> ParsedSource:
    """CSV with a header row naming the fields (title required; id, summary, url, themes, submitted_by)."""
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "title" not in header:
        raise SourceError(
            f"{source}: line 1 is not a header row with a 'title' column",
            f"add a header row naming the columns: {', '.join(FIELDS)}",
        )
    reader.fieldnames = header

    def rows() -> Iterable[tuple[str, dict[str, Any]]]:
        try:
            for row in reader:
                extra = row.pop(None, None)
                if extra:
                    row["(extra columns)"] = extra
                yield f"line {reader.line_num}", row
        except csv.Error as e:
            raise SourceError(f"{source}: line {reader.line_num}: {e}", "fix the CSV at that line") from e

    return _parse_records(rows(), source, repair)
