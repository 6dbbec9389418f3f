"""Where bounces are kept, read message by message: a Maildir, an mbox, a single file, or an IMAP folder over TLS
(``imaps://user:password@host[:port]/FOLDER``, or ``imap://`` with STARTTLS required).

An IMAP message is moved to a ``processed`` folder (``?processed=NAME`` to name another) once the caller has acted on
it, that is when it asks for the next message; one it was acting on when it stopped (an error, the store away) stays
in the folder, unread by us, for the next read. Nothing is ever deleted. A mailbox is named with ``shown``: never its
password.
"""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from digest.errors import SourceError
from digest.text.links import redact_url

IMAP_SCHEMES = ("imaps", "imap")
# Messages moved to the processed folder per IMAP command.
_MOVE_BATCH = 50


def is_imap(location: str) -> bool:
    return location.split("://", 1)[0].lower() in IMAP_SCHEMES if "://" in location else False


def shown(location: str) -> str:
    """The mailbox as it may be logged or printed: an IMAP URL without its user and password."""
    return redact_url(location) if is_imap(location) else location


def messages_of(
    location: str | Path, single: bool = True, timeout: float = 30.0, keep: bool = False
) -> Iterator[tuple[str, bytes]]:
    """The messages of a Maildir, an mbox, an IMAP folder, or (``single``) a file holding one message; each with its
    key (the file's name, the mbox's number, the folder and UID). ``keep``: an IMAP folder's messages stay where
    they are (only looked at)."""
    if is_imap(str(location)):
        yield from _imap(str(location), timeout, keep)
        return
    path = Path(location)
    if path.is_dir():
        yield from _maildir(path)
        return
    if not path.is_file():
        raise SourceError(f"{path}: no such Maildir or mbox", "check the path (or bounce_mailbox)")
    with path.open("rb") as first:
        start = first.read(5)
    if single and start != b"From ":
        yield str(path), path.read_bytes()
        return
    if start and start != b"From ":
        raise SourceError(
            f"{path}: not an mbox file (an mbox starts with a 'From ' line): nothing read",
            "give a Maildir folder, an mbox file or an imaps:// URL",
        )
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            try:
                with box.get_file(key) as handle:
                    yield str(key), handle.read()
            except (OSError, KeyError):
                continue  # gone meanwhile
    finally:
        box.close()


def _maildir(path: Path) -> Iterator[tuple[str, bytes]]:
    """The messages of a Maildir's new/ and cur/, whichever of them exist (an MTA may have made only one so far)."""
    folders = [path / sub for sub in ("new", "cur") if (path / sub).is_dir()]
    if not folders:
        raise SourceError(f"{path}: not a Maildir (no new/ or cur/)", "give a Maildir folder or an mbox file")
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            try:
                data = (folder / name).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue  # gone meanwhile (another reader moved it)
            yield f"{folder.name}/{name.split(':', 1)[0]}", data


def _imap(location: str, timeout: float, keep: bool) -> Iterator[tuple[str, bytes]]:
    """An IMAP folder's messages, oldest first; each moved to the processed folder once the caller asks for the
    next (see the module's docstring)."""
    import ssl

    from imapclient import IMAPClient  # here: only a reader of an IMAP mailbox needs it
    from imapclient.exceptions import IMAPClientError

    parts = urlsplit(location)
    name = shown(location)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    processed = parse_qs(parts.query).get("processed", ["processed"])[0]
    secure = parts.scheme.lower() == "imaps"
    hint = "check bounce_mailbox: imaps://USER:PASSWORD@HOST[:PORT]/FOLDER (the password percent-encoded)"
    try:
        client = IMAPClient(
            parts.hostname or "",
            port=parts.port or (993 if secure else 143),
            ssl=secure,
            ssl_context=ssl.create_default_context(),
            timeout=timeout,
        )
    except (OSError, IMAPClientError) as e:
        raise SourceError(f"{name}: cannot reach the IMAP server: {type(e).__name__}: {e}", hint) from None
    done: list[int] = []
    try:
        try:
            if not secure:
                client.starttls(ssl.create_default_context())
            client.login(unquote(parts.username or ""), unquote(parts.password or ""))
            client.select_folder(folder, readonly=keep)
            if not keep and not client.folder_exists(processed):
                client.create_folder(processed)
            uids = sorted(client.search("ALL"))
        except (OSError, IMAPClientError) as e:
            # The server's words (never our password: IMAPClient's errors quote the server's answer only).
            raise SourceError(f"{name}: {type(e).__name__}: {e}", hint) from None
        for uid in uids:
            try:
                data = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
            except (OSError, IMAPClientError) as e:
                raise SourceError(f"{name}: message {uid}: {type(e).__name__}: {e}", hint) from None
            if data is None:
                continue  # gone meanwhile (another reader moved it)
            yield f"{folder}/{uid}", bytes(data)
            if keep:
                continue
            done.append(uid)  # the caller asked for the next: this one is acted on
            if len(done) >= _MOVE_BATCH:
                _move(client, done, processed)
    finally:
        try:
            _move(client, done, processed)
            client.logout()
        except (OSError, IMAPClientError):
            pass  # what was not moved is read again, and counted once (digest.mail.replies.bounces)


def _move(client: Any, uids: list[int], folder: str) -> None:
    """Move these messages to ``folder`` (MOVE where the server has it, else copy, flag deleted, expunge them) on
    the IMAPClient ``client``; ``uids`` is emptied."""
    if not uids:
        return
    if client.has_capability("MOVE"):
        client.move(uids, folder)
    else:
        client.copy(uids, folder)
        client.add_flags(uids, [b"\\Deleted"])
        client.uid_expunge(uids) if client.has_capability("UIDPLUS") else client.expunge()
    uids.clear()
