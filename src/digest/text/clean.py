"""Text repair and normalisation: mojibake, whitespace, slugs, fingerprints, derived titles."""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Windows-1252 bytes read as Mac Roman. Each rule names the character as it arrives, the character it was
# meant to be, and the only context in which it is taken for mojibake, so that genuine letters (María,
# Noël, España, Forlì) and text that is already right (Terrassa’s, –) pass untouched.
_LETTER = r"[^\W\d_]"
_NOT_LETTER = r"(?![^\W\d_])"
_ENGLISH_SHORT_STEMS = {"i", "it", "he", "we", "she", "let", "who", "you", "they", "that", "what", "here"}

# ‘ opening quote (0x91 -> ë): at the start of a word, never inside one (Noël, Zoë, Citroën).
_OPEN_SINGLE = re.compile(rf"(?<!{_LETTER})ë(?=[\w@#$])")
# “ (0x93 -> ì) opens, ” (0x94 -> î) closes: an Italian ì or French î never starts or ends a word like that.
_OPEN_DOUBLE = re.compile(rf"(?<!{_LETTER})ì(?=[\w@#$])")
_CLOSE_DOUBLE = re.compile(rf"(?<=[\w.,!?])î{_NOT_LETTER}")
# – (0x96 -> ñ) and — (0x97 -> ó) between spaces or digits; a genuine ñ or ó sits inside a word.
_EN_DASH = re.compile(r"(?<=[\s\d])ñ(?=[\s\d])")
_EM_DASH = re.compile(r"(?<=[\s\d])ó(?=[\s\d])")
# … (0x85 -> Ö) after a word; a genuine Ö starts one (Österreich).
_ELLIPSIS = re.compile(rf"(?<=[a-z.,!?])Ö{_NOT_LETTER}")
# • (0x95 -> ï) as a bullet at the start of a line; a genuine ï sits inside a word (naïve).
_BULLET = re.compile(r"(?m)^(\s*)ï(?=\s)")
# € (0x80 -> Ä) before an amount; a genuine Ä starts a word (Ärzte).
_EURO = re.compile(r"Ä(?=\s?\d)")
# ’ (0x92 -> í): English contractions and possessives (donít, Arabiaís, weíre), plural possessives
# (Communicatorsí), and the closing quote of a ‘...’ pair. Genuine í (María, país, Luís, así) stays.
_APOSTROPHE = re.compile(rf"(?<={_LETTER})í(?=(?:s|t|d|m|ll|re|ve){_NOT_LETTER})")
_PLURAL_POSSESSIVE = re.compile(r"(?<=s)í(?![\w’'])")
_CLOSE_SINGLE = re.compile(r"(?<=[\w.,!?])í(?![\w’'])")
_CLOSER = re.compile(rf"’{_NOT_LETTER}")
# A Latin-1 letter of cp1252 (0xA0-0xFF) read as Mac Roman turns into a capital or a symbol inside a
# lowercase word (Z¸rich, cafÈ). A lowercase letter there is left alone: it is far more likely genuine.
_INNER = re.compile(r"(?<=[A-Za-z])([\x80-\uffff])(?=[a-z])|(?<=[a-z])([\x80-\uffff])\b")


def _word_before(text: str, index: int) -> str:
    start = index
    while start > 0 and (text[start - 1].isalpha()):
        start -= 1
    return text[start:index]


def _fix_apostrophes(text: str) -> str:
    def contraction(m: re.Match[str]) -> str:
        stem = _word_before(text, m.start())
        english = len(stem) >= 3 or stem.lower() in _ENGLISH_SHORT_STEMS
        return "’" if english else m.group()

    text = _APOSTROPHE.sub(contraction, text)

    def plural(m: re.Match[str]) -> str:
        return "’" if len(_word_before(text, m.start())) >= 4 else m.group()

    text = _PLURAL_POSSESSIVE.sub(plural, text)
    # A closing ’ only where an opening ‘ is still unmatched before it.
    out: list[str] = []
    open_quotes = 0
    last = 0
    for m in _CLOSE_SINGLE.finditer(text):
        segment = text[last : m.start()]
        open_quotes += segment.count("‘") - len(_CLOSER.findall(segment))
        out.append(segment)
        if open_quotes > 0:
            out.append("’")
            open_quotes -= 1
        else:
            out.append("í")
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _fix_inner(m: re.Match[str]) -> str:
    char = m.group(1) or m.group(2)
    if char.islower():
        return char
    try:
        fixed = char.encode("mac_roman").decode("cp1252")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return char
    return fixed if fixed.islower() else char


def repair_mojibake(text: str) -> str:
    """Undo Windows-1252 text that was read as Mac Roman, leaving correct text as it is."""
    if text.isascii():
        return text
    text = _OPEN_SINGLE.sub("‘", text)
    text = _OPEN_DOUBLE.sub("“", text)
    text = _CLOSE_DOUBLE.sub("”", text)
    text = _fix_apostrophes(text)
    text = _EN_DASH.sub("–", text)
    text = _EM_DASH.sub("—", text)
    text = _ELLIPSIS.sub("…", text)
    text = _BULLET.sub(r"\1•", text)
    text = _EURO.sub("€", text)
    return _INNER.sub(_fix_inner, text)


# What no XML document, mail header or terminal can carry, or should: C0 controls (but tab and line ends),
# DEL, C1 controls, lone surrogates, non-characters, zero-width and line-separator characters, and the bidi
# overrides and isolates that make text read other than it is stored ("Trojan Source").
_NONCHARACTERS = "".join(f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0x10000, 0x110000, 0x10000))
_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    "\u200b\u2028\u2029\ufeff\u202a-\u202e\u2066-\u2069" + _NONCHARACTERS + "]"
)
_C1 = re.compile("[\x80-\x9f]")


def _c1_as_cp1252(m: re.Match[str]) -> str:
    # A C1 control in decoded text is almost always a Windows-1252 byte decoded as Latin-1 (0x92 for ’).
    try:
        return m.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:
        return ""


def strip_unsafe(text: str) -> str:
    """Text without the characters listed above (Windows-1252 punctuation read as C1 is restored first)."""
    return _CONTROL.sub("", _C1.sub(_c1_as_cp1252, text))


_SPACES = re.compile(r"[ \t\u00a0]+")
_WHITESPACE = re.compile(r"\s+")


def clean_line(text: str) -> str:
    """One line of text: NFC, no control characters, any run of white space (line breaks too) one space, trimmed.

    No mojibake repair here: that is the parser's call, made once per document (see digest.ingest.encoding).
    """
    text = unicodedata.normalize("NFC", strip_unsafe(text))
    return _WHITESPACE.sub(" ", text).strip()


def clean_paragraphs(text: str) -> str:
    """Multi-line text: each line cleaned, empty lines dropped, paragraphs kept apart by one blank line."""
    paragraphs = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        joined = "\n".join(line for line in (clean_line(x) for x in block.split("\n")) if line)
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)


def header_safe(text: str, limit: int = 200) -> str:
    """Text fit for a mail header: no CR, LF or other control characters, one line, bounded length."""
    if len(text) <= limit and text.isascii() and text.isprintable() and "  " not in text and text == text.strip():
        return text  # fit already (the common case: an address, a Message-ID, a link): nothing to take out
    text = strip_unsafe(re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", text))
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def slugify(name: str) -> str:
    """`Goal 5: Gender equality` -> `goal-5-gender-equality`; accents folded, never empty, unique per name.

    Letters that have no ASCII form (Cyrillic, Arabic, Chinese, ...) would vanish and make names collide
    (`目標5：性別平等` and `الهدف 5` both fold to `5`), so such a slug ends in a short hash of the name.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    folded = decomposed.encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    if not slug:
        return "theme-" + digest[:10]
    if any(not c.isascii() and unicodedata.category(c)[0] in "LN" for c in decomposed):
        return f"{slug[:100].rstrip('-')}-{digest[:8]}"
    return slug[:120]


class _WordChars(dict[int, int | str]):
    """A str.translate table, filled as characters are met: letters, digits and marks of any script (Unicode
    categories L, N, M) stay, everything else becomes a space. The fingerprint's per-character test, in C."""

    def __missing__(self, code: int) -> int | str:
        kept: int | str = code if unicodedata.category(chr(code))[0] in "LNM" else " "
        self[code] = kept
        return kept


_WORD_CHARS = _WordChars()


def fingerprint(*parts: str) -> str:
    """A hash of text that ignores case, punctuation, symbols and spacing, in every script: the identity of an
    item that has no guid and no link. NFKC folds compatibility forms (full-width Latin, ligatures), casefold
    folds case (ß/ss, Σ/σ/ς); letters, digits and their combining marks of any script are kept."""
    words: list[str] = []
    for part in parts:
        words.extend(unicodedata.normalize("NFKC", part).casefold().translate(_WORD_CHARS).split())
    return hashlib.sha256(" ".join(words).encode("utf-8", "surrogatepass")).hexdigest()[:32]


# Typographic variants that one site writes straight and another curly: not a difference between titles.
_TYPOGRAPHIC = str.maketrans(
    {
        "‘": "'",
        "’": "'",
        "ʼ": "'",
        "′": "'",
        "“": '"',
        "”": '"',
        "„": '"',
        "«": '"',
        "»": '"',
        "–": "-",
        "—": "-",
        "‐": "-",
        "‑": "-",
        "…": "...",
    }
)


def title_form(title: str) -> str:
    """A title as compared for identity: NFKC, casefolded, quotes and dashes straightened, white space collapsed,
    no final full stop; other punctuation and symbols kept (they tell "C++ in schools" from "C in schools")."""
    text = unicodedata.normalize("NFKC", title).casefold().translate(_TYPOGRAPHIC)
    return " ".join(text.split()).rstrip(".。 ")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# A sentence ends at . ! ? after a letter or digit of any script, or at the full stops of other scripts:
# Chinese/Japanese 。！？, Arabic ؟ and ۔, Devanagari ।.
_SENTENCE_END = re.compile(r"(?<=[^\W_)])[.!?](?=\s|$)|[。！？؟۔।]")
_DASH_CUT = re.compile(r"\s[–—-]\s")
# Scripts written without spaces between words: a title there is judged by its length in characters.
_NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u0e00-\u0e7f]")


def derive_title(summary: str, limit: int = 80) -> str:
    """A title for an item that came without one: its first sentence or clause, cut at a word."""
    first = summary.strip().split("\n", 1)[0]
    end = _SENTENCE_END.search(first)
    if end:
        first = first[: end.start()]
    dash = _DASH_CUT.search(first)
    if dash and dash.start() >= 10:
        first = first[: dash.start()]
    first = first.strip(" ,;:，、：")
    if len(first) <= limit:
        return first or "Untitled practice"
    cut = first[:limit]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:，、：") + "…"


def reads_like_sentence(line: str) -> bool:
    """True for a line in a title slot that reads like running text rather than a title.

    Long, and ending like a sentence; or long and mostly lower-case where the script has case. Scripts without
    case (Arabic, Chinese, Hebrew, ...) are judged by the ending alone, and scripts without spaces by length.
    """
    stripped = line.rstrip()
    words = line.split()
    long_enough = len(words) >= 10 or (bool(_NO_SPACES.search(line)) and len(stripped) >= 30)
    if not long_enough:
        return False
    if stripped.endswith((".", ";", "。", "؛", "۔", "।")):
        return True
    cased = [w.strip("(),:;«»\"'") for w in words]
    cased = [w for w in cased if len(w) > 3 and (w[0].isupper() or w[0].islower())]
    if len(cased) < 5:
        return False  # too few cased words to judge capitalisation (an uncased script)
    capitalised = sum(1 for w in cased if w[0].isupper())
    return capitalised / len(cased) < 0.35
