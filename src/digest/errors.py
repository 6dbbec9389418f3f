"""The exceptions library code raises.

Every error digest raises on purpose is a ``DigestError``. Its message says what went wrong and names the
thing (key, file, source, item); ``hint`` says how to fix it. The CLI prints both on one line each and exits
non-zero; anything that is not a ``DigestError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error digest raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class ConfigError(DigestError):
    """A setting is missing or has a bad value; the message names the key and where it came from."""

    hint = "fix the value in the config file or the DIGEST_* environment variable named above"


class SourceError(DigestError):
    """A source could not be read or parsed; the message names the source (and item or line)."""


class SubscriberError(DigestError):
    """A subscriber operation was refused: bad address, unknown theme, unknown subscriber."""


class TransportError(DigestError):
    """Mail could not be handed to the SMTP server or the outbox; the message names the server."""

    hint = "check DIGEST_SMTP_URL (or smtp_url in the config file) and that the server is reachable"


class NotFoundError(DigestError):
    """A theme, subscriber or digest named on the command line does not exist."""
