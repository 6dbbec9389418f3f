"""A real SMTP server on loopback (aiosmtpd) that misbehaves on cue, per recipient and per transaction."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Received

# Faults, one consumed per transaction to the recipient:
#   "451"      4xx at the end of DATA        "451rcpt"  4xx to RCPT (greylisting)
#   "550"      5xx to RCPT (unknown user)     "554"      5xx at the end of DATA (content refused)
#   "552full"  5xx to RCPT: mailbox full      "550block" 5xx to RCPT: the sender's IP on a block list
#   "drop"     close the connection after DATA, before any answer (the message is not accepted)
#   "stall"    answer nothing for `stall` seconds after DATA (the client times out; not accepted)
#   "hold"     accept and record the message, then wait `hold` seconds before answering 250


@dataclass
class FaultyHandler:
    script: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    ehlo: int = 0
    stall: float = 2.0
    hold: float = 5.0
    # Seconds every accepted message takes (a slow server, so a kill can land mid-run).
    pace: float = 0.0
    # Offer PIPELINING, as Postfix does (aiosmtpd reads pipelined commands in order but does not say so): the
    # client then sends MAIL, RCPT and DATA in one write, and the next message's with the end of this one's data.
    pipelining: bool = True

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]

    def _next(self, address: str, stage: tuple[str, ...]) -> str | None:
        queue = self.script.get(address) or []
        if queue and queue[0] in stage:
            return queue.pop(0)
        return None

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.ehlo += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        fault = self._next(address, ("550", "451rcpt", "552full", "550block"))
        if fault == "550":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if fault == "552full":
            return f"552 5.2.2 <{address}>: Mailbox full"
        if fault == "550block":
            return "550 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
        if fault == "451rcpt":
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        (address,) = envelope.rcpt_tos
        self.transactions.append(address)
        fault = self._next(address, ("451", "554", "drop", "stall", "hold"))
        if fault == "451":
            return "451 4.3.0 Temporary local problem, try again later"
        if fault == "554":
            return "554 5.7.1 Message refused by policy"
        if fault == "drop":
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        if fault == "stall":
            await asyncio.sleep(self.stall)
            return "451 4.4.2 too slow"  # the client gave up long ago
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.received_at.append(time.monotonic())
        if fault == "hold":
            await asyncio.sleep(self.hold)
        elif self.pace:
            await asyncio.sleep(self.pace)
        return "250 Message accepted for delivery"
