"""Text repair: mojibake out, correct text untouched; slugs, derived titles, sentence detection."""

from __future__ import annotations

import pytest

from digest.text.clean import derive_title, header_safe, reads_like_sentence, repair_mojibake, slugify


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("you donít know", "you don’t know"),
        ("Saudi Arabiaís Musaned", "Saudi Arabia’s Musaned"),
        ("Public Communicatorsí Workshops", "Public Communicators’ Workshops"),
        ("The campaign ëEverybody knowsí, launched", "The campaign ‘Everybody knows’, launched"),
        ("you donít knowí, launched", "you don’t knowí, launched"),  # no opening quote: left as it is
        ("most important actors ñ the diaspora", "most important actors – the diaspora"),
        ("in 2019ñ2023", "in 2019–2023"),
        ("Iím sure itís fine, weíre here", "I’m sure it’s fine, we’re here"),
        ("ìQuotedî words", "“Quoted” words"),
        ("a Z¸rich cafÈ", "a Zürich café"),
        ("costs Ä100", "costs €100"),
    ],
)
def test_mojibake_is_repaired(broken: str, fixed: str) -> None:
    assert repair_mojibake(broken) == fixed


@pytest.mark.parametrize(
    "correct",
    [
        "Terrassa’s Moroccan population",
        "The City of Zürich",
        "2023 – 2026",
        "María Martínez from Medellín",
        "España and the niño",
        "Noël, Zoë and Citroën",
        "el país de Luís, así es",
        "Forlì, île, naïve, Österreich, Asunción",
        "José Martí’s legacy",
        "ZÜRICH",
    ],
)
def test_correct_text_is_left_alone(correct: str) -> None:
    assert repair_mojibake(correct) == correct


def test_slugify() -> None:
    assert slugify("Goal 5: Gender equality") == "goal-5-gender-equality"
    assert slugify("Connectivity and Migration") == "connectivity-and-migration"
    assert slugify("Zürich – Stadt") == "zurich-stadt"
    assert slugify("¿?").startswith("theme-")


def test_derive_title_cuts_at_dash_or_sentence() -> None:
    assert derive_title("A Global Voice for Autism – working to equip refugee communities") == (
        "A Global Voice for Autism"
    )
    assert derive_title("Short one. Then more.") == "Short one"
    long = derive_title("In collaboration with the African diaspora in Europe, WIDU applies an innovative approach")
    assert long.endswith("…") and len(long) <= 81


def test_reads_like_sentence() -> None:
    assert reads_like_sentence(
        "Musaned was established, in part, to address issues faced by migrant domestic workers, "
        "including unethical or illegal recruitment and employment practices in Saudi Arabia"
    )
    assert not reads_like_sentence(
        "Carmen de La Legua: Municipal Plan of Local Action to Build a Future with Migrants and Refugees 2023 - 2026"
    )
    assert not reads_like_sentence("Let's Talk Migration")


def test_header_safe_strips_line_breaks_and_controls() -> None:
    assert header_safe("Water\r\nBcc: victim@example.org\x00") == "Water Bcc: victim@example.org"
    assert len(header_safe("x" * 500)) == 200
