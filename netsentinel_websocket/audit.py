"""The audit log: one line per admin action, subscribe and ack (who, what, when, from where).

Lines go to the ``netsentinel_websocket.audit`` logger, so an operator can route them apart
(a handler of their own, or ``logger == "netsentinel_websocket.audit"`` in the JSON logs); the
record's time is the *when*. The fields are ``extra=`` keys (``audit``, ``subject``,
``address``, ``outcome`` and the action's own), which :mod:`.logs` masks and escapes like
every other line.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("netsentinel_websocket.audit")


def record(action: str, subject: str | None, address: str, outcome: str, **details: Any) -> None:
    """Write one audit line: ``subject`` (None before a token was accepted) did ``action`` from
    ``address``, with ``outcome`` (``ok``, ``refused``, ``not_found``, ...)."""
    shown = " ".join(f"{key}={value!r}" for key, value in details.items())
    log.info(
        "audit %s by=%r addr=%s outcome=%s%s",
        action,
        subject or "-",
        address,
        outcome,
        f" {shown}" if shown else "",
        extra={
            "event": "audit",
            "audit": action,
            "subject": subject,
            "address": address,
            "outcome": outcome,
            **details,
        },
    )
