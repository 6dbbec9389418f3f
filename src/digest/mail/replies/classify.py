"""What a refusal means, from its status code and its words: the address is gone (hard), or the receiver refused
this message or this sender for now (soft), with a reason from one vocabulary (docs/bounces.md).

A status's class is not its meaning (RFC 3463): 5.1.1 and 5.1.2 say the address is gone, but 5.2.2 (mailbox full),
5.7.1 (policy, spam, a reputation block) and 5.3.4 (too big) say the receiver refused *this* message, and a reader
must not be dropped for the receiving server's bad day. Many servers send no enhanced code, or a generic one (5.0.0,
5.5.0): the reason is then in the prose, often the quoted SMTP reply. The words win over a generic code; a specific
code wins over the words. Pure: text in, a verdict out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HARD = "hard"
SOFT = "soft"

# The reasons that mean the address is gone; every other reason is soft.
GONE = frozenset({"user-unknown", "host-unknown", "has-moved"})

# Specific enhanced status codes (RFC 3463, RFC 7372) and what they mean.
_BY_CODE = {
    "1.1": "user-unknown",
    "1.2": "host-unknown",
    "1.3": "user-unknown",  # bad destination mailbox address syntax
    "1.6": "has-moved",
    "1.10": "host-unknown",  # null MX (RFC 7505)
    "2.1": "suspended",  # mailbox disabled, not accepting messages
    "2.2": "mailbox-full",
    "2.3": "too-big",
    "3.4": "too-big",
    "3.0": "system",
    "3.1": "system",
    "3.2": "system",
    "3.5": "system",
    "4.1": "network",
    "4.2": "network",
    "4.3": "network",
    "4.4": "network",
    "4.6": "network",
    "4.7": "expired",
    "6.0": "content",
    "6.1": "content",
    "7.1": "policy",
    "7.7": "content",
    "7.23": "auth-failure",  # SPF
    "7.24": "auth-failure",
    "7.25": "auth-failure",  # reverse DNS
    "7.26": "auth-failure",  # DMARC, multiple authentication checks
    "7.27": "auth-failure",
}
# Codes that say nothing of the reason: the words decide.
_GENERIC = {"0.0", "1.0", "2.0", "4.0", "5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "7.0"}

# The words, most specific first. Each pattern is searched case-insensitively in the whole diagnostic.
# Words that decide whatever the code says: providers that answer "the address does not exist" under another code
# (Exchange Online's directory-based edge blocking as 5.4.1, Office 365's 5.1.10, Yahoo's 554).
_DECISIVE = re.compile(
    r"recipient address rejected: access denied|resolver\.adr\.recipnotfound|recipientnotfound|recipient not "
    r"found by smtp address lookup|no such user here|(user|recipient) doesn't have an? [\w.-]+ account|"
    r"not listed in (the )?(domino |public )?(directory|address book)",
    re.IGNORECASE,
)

_WORDS: tuple[tuple[str, str], ...] = (
    ("greylisted", r"grey ?list|gray ?list"),
    ("has-moved", r"\b(has moved|no longer (at|with|available at) this|address (has )?changed)\b"),
    (
        "mailbox-full",
        r"mailbox (is |was )?full|over ?quota|quota (exceeded|exceed)|exceed(ed|s)? (the |his |her )?"
        r"(storage|quota)|insufficient (system )?storage|mailbox size limit|disk quota|out of (disk )?space|"
        r"no space left|full mailbox|user is over",
    ),
    (
        "too-big",
        r"(message|mail) (is )?too (large|big)|size (limit|exceed)|exceeds (the )?(maximum )?(message )?"
        r"size|message length exceeds|552[ -]5\.3\.4",
    ),
    ("virus", r"\bvirus|malware|infected|trojan\b"),
    (
        "auth-failure",
        r"\bspf\b|\bdkim\b|\bdmarc\b|sender policy framework|not authenticated|authentication "
        r"(failed|required)|unauthenticated|reverse dns|ptr record|rdns",
    ),
    (
        "spam",
        r"\bspam(my)?\b|junk mail|bulk mail|content (was )?(rejected|filtered)|message (content )?rejected as|"
        r"\bubl\b|looks like spam|suspicious",
    ),
    (
        "blocked",
        r"blacklist|blocklist|block ?list|black ?list|\blisted\b|\bblocked\b|reputation|rbl|dnsbl|spamhaus|spamcop|"
        r"barracuda|"
        r"poor reputation|ip .*(banned|blocked)|client host .*(rejected|blocked)|access denied|banned",
    ),
    (
        "rate-limited",
        r"rate limit|too many (messages|connections|recipients|emails)|throttl|try (again )?later.*"
        r"(rate|volume)|sending limit|receiving (mail )?at a rate|temporarily deferred due to",
    ),
    (
        "expired",
        r"retry (time(out)?|period) (exceeded|expired)|delivery time expired|message expired|too long "
        r"in (the )?queue|giving up|gave up|could not be delivered (for|within) \d+ (days|hours)|expired after",
    ),
    (
        "suspended",
        r"(account|mailbox|user) (is |has been )?(disabled|suspended|inactive|deactivated|locked|"
        r"closed|blocked by admin)|not accepting (mail|messages)|inactive (user|account)",
    ),
    (
        "host-unknown",
        r"host (or domain name )?not found|domain (name )?not found|unknown (host|domain)|no such "
        r"(host|domain)|name or service not known|unrouteable (mail )?(address|domain)|no (valid )?mx|nxdomain|"
        r"domain (does not|doesn't) exist|dns (lookup|error).*(fail|not found)|host unknown|unresolvable",
    ),
    (
        "user-unknown",
        r"(user|recipient|mailbox|address|account)( name)? (is )?(unknown|not found|invalid|does not "
        r"exist|doesn't exist|unavailable permanently)|unknown (user|recipient|mailbox|local[- ]part|address)|no such "
        r"(user|recipient|mailbox|address|account|person)|invalid (recipient|mailbox|address)|does not exist|"
        r"doesn't exist|no mailbox (here )?by that name|not a valid (mailbox|recipient|user)|recipient "
        r"(address )?rejected|address rejected|undeliverable address|couldn't be found|could not be found|"
        r"user unknown|mailbox unavailable|not our customer|account that you tried to reach",
    ),
    (
        "policy",
        r"\bpolicy\b|not allowed|relay(ing)? (denied|not permitted|access denied)|not permitted|"
        r"administrative prohibition|prohibited|rejected for policy|refused",
    ),
    (
        "network",
        r"connection (timed out|refused|reset|lost)|network (is )?unreachable|no route to host|"
        r"timed? ?out|could not connect|tls (handshake )?fail|lost connection",
    ),
    (
        "system",
        r"system (error|problem|not available)|internal (server )?error|temporary (local )?(problem|"
        r"failure|error)|local error|service (not available|unavailable)|resources temporarily|try again later|"
        r"greylist|graylist|deferred",
    ),
)
_COMPILED = tuple((reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in _WORDS)
_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"\b([245])\d\d\b")


@dataclass(frozen=True)
class Verdict:
    """A refusal, read: ``kind`` (hard: the address is gone; soft: this message or sender refused, or later),
    its reason and the status code found (the enhanced one, else the SMTP reply's, else "")."""

    kind: str
    reason: str
    status: str


def classify(status: str = "", text: str = "", permanent: bool | None = None) -> Verdict:
    """The verdict on a refusal with this status code (enhanced, or an SMTP reply) and these words (a DSN's
    Diagnostic-Code, a bounce's prose, the reply during the transaction). ``permanent``: what the report says
    (Action: failed) when there is no code to say it. A permanent refusal is hard only for a reason in GONE."""
    # The first specific code: a generic one in the status field (5.0.0) gives way to the one the words quote.
    codes = [*_CODE.finditer(status), *_CODE.finditer(text)]
    found = next((c for c in codes if f"{int(c.group(2))}.{int(c.group(3))}" not in _GENERIC), None)
    found = found or (codes[0] if codes else None)
    code = found.group(0) if found else ""
    reply = _REPLY.search(status) or _REPLY.search(text)
    reason = "user-unknown" if _DECISIVE.search(text) else ""
    if found and not reason:
        detail = f"{int(found.group(2))}.{int(found.group(3))}"
        if detail not in _GENERIC:
            reason = _BY_CODE.get(detail, "")
    if not reason or reason in ("policy", "system"):  # the words say more than a code of a broad class
        worded = next((r for r, pattern in _COMPILED if pattern.search(text)), "")
        reason = worded or reason
    temporary = (found and found.group(1) == "4") or (not found and reply and reply.group(1) == "4")
    if temporary or permanent is False:
        return Verdict(SOFT, reason or "undetermined", code or (reply.group(0) if reply else ""))
    return Verdict(
        HARD if reason in GONE else SOFT, reason or "undetermined", code or (reply.group(0) if reply else "")
    )
