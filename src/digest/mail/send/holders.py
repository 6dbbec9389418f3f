"""Who holds a claim ("host:pid"), and which local holders are dead: their claims are taken over at once."""

from __future__ import annotations

import os
import socket

from sqlalchemy.orm import Session

from digest.store.digests import claim_holders


def holder_id() -> str:
    """Who claims a digest: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_alive(pid: int) -> bool:
    """Whether the process of this host with this pid still runs. A zombie (dead, not yet reaped by its parent:
    a sender killed while `digest send` plans) does not: it will never finish what it holds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (command) state ...": the state follows the last parenthesis (a command may hold any).
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc here: signal 0 is all there is to go by


def dead_local_holders(session: Session) -> list[str]:
    """Claims held by processes of this host that no longer run (killed, crashed)."""
    host = socket.gethostname()
    dead = []
    for holder in claim_holders(session):
        name, _, pid = holder.rpartition(":")
        if name == host and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            dead.append(holder)
    return dead
