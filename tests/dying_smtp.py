"""An SMTP server in a process of its own that dies (exits at once, like kill -9) when the `die_at`-th message's data
arrives, before accepting it; every message it accepted is written to a Maildir first. Or, with `--421`, a server that
answers every connection "421 4.3.2 Service shutting down" at the greeting and closes it.

    python tests/dying_smtp.py PORT MAILDIR DIE_AT
    python tests/dying_smtp.py PORT --421
"""

from __future__ import annotations

import mailbox
import os
import socket
import sys
import threading
from typing import Any


def refuse_at_greeting(port: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"421 4.3.2 Service shutting down\r\n")


def die_at(port: int, maildir: str, limit: int) -> None:
    from aiosmtpd.controller import Controller

    box = mailbox.Maildir(maildir, create=True)
    count = 0

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            nonlocal count
            count += 1
            if count >= limit:
                os._exit(1)  # gone, mid-transaction: this message is not accepted
            box.add(envelope.content)
            return "250 2.0.0 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    threading.Event().wait()  # until killed (or dead by its own hand, above)


if __name__ == "__main__":
    if sys.argv[2] == "--421":
        refuse_at_greeting(int(sys.argv[1]))
    else:
        die_at(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
