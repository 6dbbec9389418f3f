"""What an operator does to one subscriber, the one way, whether through the REST API or the operator page: resend
the confirmation, suppress, unsuppress, erase. Each in one transaction with its audit line (who, what, to whom,
when, from where); the confirmation mail after the change commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from digest.access import audit
from digest.config import Settings
from digest.errors import SubscriberError
from digest.mail.send.notices import send_confirmation
from digest.mail.send.transport import transport_for
from digest.schedules.defaults import defaults_from
from digest.store.db import transaction
from digest.store.states import SubscriberStatus
from digest.subscriptions import subscribers as people

ACTIONS = ("resend-confirmation", "suppress", "unsuppress", "erase")


class StateConflict(SubscriberError):
    """The action does not fit the subscriber's state (suppressing one who left, unsuppressing one not suppressed)."""


def act(
    factory: sessionmaker[Session],
    settings: Settings,
    email: str,
    action: str,
    reason: str,
    actor: str,
    client: str,
    now: datetime,
) -> str:
    """Do ``action`` to the subscriber ``email``; the address acted on ("(erased)" after an erasure). NotFoundError
    when there is no such subscriber, StateConflict when the action does not fit their state."""
    if action not in ACTIONS:
        raise SubscriberError(f"unknown action {action!r}", "one of: " + ", ".join(ACTIONS))
    mail = None
    with transaction(factory) as session:
        found = people.get_subscriber(session, email)
        address = found.email
        try:
            if action == "suppress":
                people.suppress(session, found, reason, now)
            elif action == "unsuppress":
                people.unsuppress(found, defaults_from(settings), now)
            elif action == "erase":
                people.erase(session, found, now)
                audit.forget(session, address)
                address = "(erased)"
            else:
                if found.status != SubscriberStatus.PENDING:
                    raise StateConflict(f"{found.email} is {found.status}, not awaiting confirmation")
                names = sorted(s.theme.name for s in found.subscriptions)
                mail = (found.key, names, found.language or settings.default_language)
        except StateConflict:
            raise
        except SubscriberError as e:
            raise StateConflict(str(e), e.hint) from None
        audit.record(session, actor, f"subscriber.{action}", address, now, reason, client)
    if mail is not None:
        send_confirmation(settings, transport_for(settings), address, *mail)
    return address
