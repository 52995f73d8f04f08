"""Logging setup for the runner: plain text or one JSON object per line.

Connection lines carry structured fields (``extra=``: event, conn, subject, address, code,
duration, events_sent) that the JSON format writes as keys of their own. Whatever the format,
a filter masks anything that looks like a token (a JWT, ``token=`` in a query string, a
``bearer.`` subprotocol) before a line is written: Tornado's access log, for one, prints
request URIs verbatim.
"""

from __future__ import annotations

import logging
import re
import sys

import orjson

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

_SECRETS = re.compile(
    r"eyJ[\w-]*\.[\w-]*\.[\w-]*"  # a JWT (its header always starts with '{"')
    r"|(?<=token=)[^&\s\"']+"  # a query or form token
    r"|(?<=bearer[ .])[\w.~+/=-]+",  # an Authorization header or a subprotocol
    re.IGNORECASE,
)
MASK = "[redacted]"


# Line breaks and other controls in a message could forge log lines or drive a terminal; the
# text logs get them as visible escapes (JSON logs escape them by themselves).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def mask_tokens(text: str) -> str:
    """``text`` with anything token-like replaced by ``[redacted]``."""
    return _SECRETS.sub(MASK, text)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


class RedactTokens(logging.Filter):
    """Masks tokens in the rendered message and in ``extra`` string fields, and escapes
    control characters in the message (leaving records without any untouched): clients
    choose some of what is logged (a token's ``sub``, an ack's note)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _CONTROLS.sub(_escape, mask_tokens(message))
        if masked != message:
            record.msg, record.args = masked, None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, mask_tokens(value))
        return True


class HealthProbes(logging.Filter):
    """A 503 from ``/healthz`` is the answer a probe asked for (the broker is not ready), not
    a server error, yet Tornado's access log puts every 5xx at ERROR: one line per probe, every
    few seconds. Those lines are demoted to INFO, and so kept out of a WARNING-level access
    log; the broker logs the outage itself, once ("redis broker unavailable")."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 3
            and args[0] == 503
            and str(args[1]).startswith(("GET /healthz ", "HEAD /healthz "))
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the record's ``extra`` fields,
    and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = mask_tokens(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    access = logging.getLogger("tornado.access")
    access.setLevel(logging.WARNING)
    if not any(isinstance(f, HealthProbes) for f in access.filters):
        access.addFilter(HealthProbes())
