"""Theme listing pages: structure, missing and misplaced titles, theme line, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import SourceError
from digest.ingest import read_source
from digest.ingest.listing import parse_listing
from tests.conftest import FIXTURES, SAMPLES_ABSENT, SHARED_SAMPLES, fixture_path


def test_parses_titles_submitters_paragraphs_and_theme() -> None:
    parsed = read_source(fixture_path("listing-water.txt"))
    assert parsed.theme == "Water and Sanitation"
    titles = [i.title for i in parsed.items]
    assert titles[0].startswith("Community Water Kiosks in Kisumu")
    assert len(parsed.items) == 5
    kiosk = parsed.items[0]
    assert kiosk.submitted_by == "Ms. Amina ODHIAMBO"
    assert kiosk.summary.count("\n\n") == 1  # two paragraphs
    assert "Kisumu’s own" in kiosk.summary


def test_missing_title_is_derived_and_reported() -> None:
    parsed = read_source(fixture_path("listing-water.txt"))
    item = parsed.items[1]
    assert item.title == "Clean Taps Now" and item.title_derived
    assert any("no title" in p.reason and p.title == "Clean Taps Now" for p in parsed.problems)


def test_sentence_in_title_slot_moves_to_previous_practice() -> None:
    parsed = read_source(fixture_path("listing-water.txt"))
    chennai, dhaka = parsed.items[2], parsed.items[3]
    assert chennai.title == "Rainwater Harvesting in Chennai"
    assert chennai.summary.endswith("before it connects them to the grid")
    assert dhaka.title_derived and dhaka.title.startswith("Women-led sanitation committees")
    assert any("running text" in p.reason and "Rainwater Harvesting" in p.reason for p in parsed.problems)


def test_mojibake_repaired_in_summaries() -> None:
    chennai = read_source(fixture_path("listing-water.txt")).items[2]
    assert "Chennai’s building code" in chennai.summary
    assert "‘Every roof counts’" in chennai.summary
    assert "levels – by up to" in chennai.summary
    for bad in ("í", "ë", "ñ"):
        assert bad not in chennai.summary


def test_genuine_accents_and_cut_lists_survive() -> None:
    parsed = read_source(fixture_path("listing-goal6.txt"))
    assert parsed.theme == "Goal 6: Clean water and sanitation"
    menstrual = parsed.items[1]
    assert menstrual.title == "Menstrual Health in Schools of Forlì and Zürich"
    assert menstrual.submitted_by == "José María NÚÑEZ"
    assert "Zoë Müller" in menstrual.summary
    budget = parsed.items[2]
    assert budget.summary.endswith(
        "Priorities for 2025:\nFix leaks in the southern districts.\nExtend night lighting at public standpipes."
    )


def test_summary_ending_in_colon_is_reported() -> None:
    parsed = read_source(fixture_path("listing-water.txt"))
    assert any("cut a list" in p.reason and p.title == "Water Safety Plans for Small Towns" for p in parsed.problems)


def test_listing_without_theme_line_names_no_theme() -> None:
    text = (FIXTURES / "listing-water.txt").read_text(encoding="utf-8").replace("Subscribe to Water and Sanitation", "")
    parsed = parse_listing(text, "no-theme.txt")
    assert parsed.theme is None  # store_parsed then refuses it unless --theme is given (see test_ingest)


def test_file_without_practices_is_an_error() -> None:
    with pytest.raises(SourceError, match="not-a-listing.txt"):
        read_source(fixture_path("not-a-listing.txt"), "listing")


def test_undecodable_file_is_an_error_naming_file_and_byte() -> None:
    with pytest.raises(SourceError, match=r"undecodable.txt: not UTF-8 \(byte \d+\)") as info:
        read_source(fixture_path("undecodable.txt"))
    assert "UTF-8" in info.value.hint


def test_unknown_kind_is_an_error_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(SourceError, match="cannot tell what kind") as info:
        read_source(str(path))
    assert "--format" in info.value.hint


@pytest.mark.skipif(not SHARED_SAMPLES.is_dir(), reason=SAMPLES_ABSENT)
def test_real_samples_parse_without_mojibake() -> None:
    items = [i for p in sorted(SHARED_SAMPLES.glob("*.txt")) for i in read_source(str(p)).items]
    assert len(items) == 16  # 15 practices, Terrassa listed twice
    text = "\n".join(i.title + "\n" + i.summary for i in items)
    for broken in ("donít", "Arabiaís", "ëEverybody", "knowí", "Communicatorsí", " ñ "):
        assert broken not in text
    for intact in ("Zürich", "Terrassa’s", "Saudi Arabia’s", "‘Everybody knows something that you don’t know’"):
        assert intact in text
    assert all(i.title for i in items)
