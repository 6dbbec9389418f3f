"""Bytes to text by the rules: a BOM, then the HTTP charset, then the XML declaration (or XML's own signature
for UTF-16/32 without a BOM, XML 1.0 appendix F), then UTF-8; a guess (charset-normalizer) only when it is
confident; otherwise a clear error naming the source.

The BOM comes first because it is in the bytes themselves (RFC 7303 section 3, and what browsers do), so a
server that mislabels a file with a BOM does not garble it. Whether the text came from a Unicode encoding is
kept: the Mac Roman repair applies only to such text (a legacy encoding was read as itself, not misread).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass

from charset_normalizer import from_bytes

from digest.errors import SourceError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM it starts with
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# XML 1.0 appendix F: the first four bytes of `<?xm` (or `<` and a name) without a BOM.
_XML_SIGNATURES = (
    (b"\x00\x00\x00\x3c", "utf-32-be"),
    (b"\x3c\x00\x00\x00", "utf-32-le"),
    (b"\x00\x3c\x00\x3f", "utf-16-be"),
    (b"\x3c\x00\x3f\x00", "utf-16-le"),
    (b"\x00\x3c\x00", "utf-16-be"),
    (b"\x3c\x00", "utf-16-le"),
)
_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.I)
# Single-byte Latin code pages that a detector cannot tell apart on short text; the web means windows-1252.
_LATIN = {
    "cp1252",
    "latin_1",
    "iso8859_15",
    "cp1250",
    "iso8859_2",
    "iso8859_10",
    "iso8859_3",
    "iso8859_4",
    "iso8859_9",
    "iso8859_13",
    "iso8859_14",
    "iso8859_16",
    "hp_roman8",
    "mac_roman",
    "mac_latin2",
    "cp1257",
}
_CJK = {
    "big5",
    "big5hkscs",
    "gb2312",
    "gbk",
    "gb18030",
    "euc_jp",
    "shift_jis",
    "cp932",
    "euc_kr",
    "cp949",
    "johab",
    "shift_jis_2004",
    "euc_jis_2004",
    "iso2022_jp",
    "hz",
}
UNICODE = {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


@dataclass(frozen=True)
class Decoded:
    text: str
    # The Python codec used, and how it was chosen ("BOM", "HTTP charset", "XML declaration", ...).
    encoding: str
    how: str

    @property
    def unicode(self) -> bool:
        """Decoded from UTF-8/16/32: mojibake in it came from upstream and may be repaired."""
        return self.encoding in UNICODE


def codec_name(label: str) -> str | None:
    """Python's codec for a charset label, or None when there is no such encoding."""
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    # A declared ISO-8859-1 or US-ASCII is windows-1252 on the web (the WHATWG encoding standard).
    if name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"
    return name.replace("_", "-") if name.startswith("utf") else name


def http_charset(content_type: str | None) -> str | None:
    match = _CHARSET.search(content_type or "")
    return match.group(1) if match else None


def bom(data: bytes) -> tuple[str, int] | None:
    for mark, name in _BOMS:
        if data.startswith(mark):
            return name, len(mark)
    return None


def xml_encoding(data: bytes) -> tuple[str, str] | None:
    """The encoding XML's own rules give (appendix F signature, then the declaration), with how it was found."""
    for signature, name in _XML_SIGNATURES:
        if data.startswith(signature):
            return name, "UTF-16/32 signature of XML"
    match = _DECLARATION.match(data[:500])
    if match:
        return match.group(1).decode("ascii"), "XML declaration"
    return None


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _cjk_share(text: str) -> float:
    wide = [c for c in text if ord(c) > 0x7F and not c.isspace()]
    ideographs = [c for c in wide if unicodedata.name(c, "").startswith(("CJK", "HANGUL", "HIRAGANA", "KATAKANA "))]
    return len(ideographs) / len(wide) if wide else 0.0


def guess(data: bytes) -> tuple[str, str] | None:
    """A confident guess of a legacy encoding (codec, text), or None.

    Confident: little chaos in the decoded text, and either language coherence or, for a CJK code page, text
    that is mostly ideographs. Ties among single-byte Latin code pages go to windows-1252.
    """
    matches = list(from_bytes(data))
    if not matches:
        return None
    best = min(m.percent_chaos for m in matches)
    tied = [m for m in matches if m.percent_chaos <= best + 0.5]
    chosen = tied[0]
    if chosen.percent_chaos > 10:
        return None
    if chosen.encoding in _LATIN:
        # The detector cannot tell Latin code pages apart on short text: windows-1252 when it reads the bytes.
        text = _strict(data, "cp1252")
        if text is not None:
            return "cp1252", text
    text = str(chosen)
    codec = codec_name(chosen.encoding) or chosen.encoding
    if chosen.encoding in _CJK:
        return (codec, text) if _cjk_share(text) >= 0.7 else None
    return (codec, text) if chosen.percent_coherence >= 5 else None


def decode(data: bytes, source: str, content_type: str | None = None, xml: bool = False) -> Decoded:
    """Text of a source by the rules above; SourceError naming the source when no rule gives a clean decoding."""
    marked = bom(data)
    if marked:
        name, size = marked
        text = _strict(data[size:], name)
        if text is None:
            raise SourceError(
                f"{source}: starts with a {name} byte order mark but is not {name}",
                "save the file again in one encoding (UTF-8)",
            )
        return Decoded(text, name, "BOM")
    declared: list[tuple[str, str]] = []
    label = http_charset(content_type)
    if label:
        declared.append((label, "HTTP charset"))
    if xml:
        found = xml_encoding(data)
        if found:
            declared.append(found)
    for label, how in declared:
        codec = codec_name(label)
        if codec is None:
            continue
        text = _strict(data, codec)
        if text is not None:
            return Decoded(text, codec, how)
    text = _strict(data, "utf-8")
    if text is not None:
        return Decoded(text, "utf-8", "UTF-8" if not declared else f"UTF-8 (the declared {declared[0][0]} did not fit)")
    guessed = guess(data)
    if guessed is not None:
        codec, text = guessed
        how = "detected" if not declared else f"detected ({declared[0][0]} was declared but does not fit)"
        return Decoded(text, codec, how)
    said = f"; declared {declared[0][0]} ({declared[0][1]}) does not fit either" if declared else ""
    try:
        data.decode("utf-8")
        where = ""
    except UnicodeDecodeError as e:
        where = f" (byte {e.start})"
    raise SourceError(
        f"{source}: not UTF-8{where}, and its encoding cannot be told with confidence{said}",
        "convert the file to UTF-8, or declare its charset (HTTP Content-Type, or the XML declaration)",
    )


def as_utf8_xml(decoded: Decoded) -> bytes:
    """An XML document re-encoded as UTF-8, its declaration saying so (for a parser that reads the bytes)."""
    text = re.sub(r"""^(\s*<\?xml[^>]*?\bencoding\s*=\s*)["'][^"']*["']""", r'\1"utf-8"', decoded.text, count=1)
    return text.encode("utf-8")
