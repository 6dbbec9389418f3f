"""Rendered digests against golden files (regenerate with DIGEST_UPDATE_GOLDEN=1 after reviewing the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digest.mail.build.render import Links, render_digest
from digest.mail.plan.compose import DigestContent, PracticeEntry, ThemeSection

GOLDEN = Path(__file__).parent / "golden"

CONTENT = DigestContent(
    period="2026-11-16",
    sections=(
        ThemeSection(
            "Goal 6: Clean water and sanitation",
            "goal-6-clean-water-and-sanitation",
            (
                PracticeEntry(
                    1,
                    "u1",
                    "Menstrual Health in Schools of Forlì and Zürich",
                    "Schools in Forlì and Zürich provide free menstrual products."
                    "\n\nPriorities:\nFix leaks.\nAdd lights.",
                    "https://practices.example.org/node/12",
                    "José María NÚÑEZ",
                    "2026-11-11T10:00:00+00:00",
                    None,
                    ("Goal 6: Clean water and sanitation", "Gender Equality"),
                ),
            ),
        ),
        ThemeSection(
            "Water & <Sanitation>",
            "water-and-sanitation",
            (PracticeEntry(2, "u2", '<script>alert("x")</script> Taps', "A & B <b>bold</b>", None, None, "2026-11"),),
        ),
    ),
)
LINKS = Links(
    base_url="https://digest.test",
    unsubscribe="https://digest.test/unsubscribe/TOKEN",
    manage="https://digest.test/manage/MANAGE",
    view="https://digest.test/digests/VIEW",
)


@pytest.mark.parametrize("part", ["text", "html"])
def test_rendered_digest_matches_golden(part: str) -> None:
    rendered = render_digest(CONTENT, LINKS, postal_address="Practice digest, 1 Rue de la Paix, 75002 Paris, France")
    body = rendered.text if part == "text" else rendered.html
    path = GOLDEN / f"digest.{'txt' if part == 'text' else 'html'}"
    if os.environ.get("DIGEST_UPDATE_GOLDEN"):
        path.write_text(body, encoding="utf-8")
    assert body == path.read_text(encoding="utf-8")
    # Each number is that of the section it names (the lead theme has one practice, not two).
    assert rendered.subject == "1 new practice in Goal 6: Clean water and sanitation and 1 in Water & <Sanitation>"
