"""Recipient addresses as the wire wants them: IDN domains in punycode; a non-ASCII local part needs SMTPUTF8."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import idna

from digest.errors import DigestError


class AddressError(DigestError):
    """An address that cannot be written for SMTP (its domain has no IDNA form); that one digest fails."""

    hint = "correct or remove the subscriber's address"


@dataclass(frozen=True)
class WireAddress:
    """An address for RCPT TO and the To header, and whether the server must offer SMTPUTF8 for it."""

    address: str
    needs_smtputf8: bool


@lru_cache(maxsize=1024)
def wire_address(address: str) -> WireAddress:
    """``josé@bücher.example`` -> ``josé@xn--bcher-kva.example`` (needs SMTPUTF8); ASCII stays as it is. Kept for
    the last addresses (a message's is asked for by its header, its transaction begun ahead, and its own)."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{address!r} is not an address (local@domain)")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise AddressError(f"{address}: the domain has no IDNA (punycode) form: {e}") from e
    return WireAddress(f"{local}@{domain}", needs_smtputf8=not local.isascii())
