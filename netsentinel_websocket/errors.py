"""The package's exception root: ``except NetSentinelError`` catches every error it raises on
purpose, and each error says what went wrong in fields of its own (a config key, an error
code, a reason label), so callers decide by type and field, never by matching message text.

| error | raised by | fields |
| --- | --- | --- |
| ``config.ConfigError`` | configuration checks | ``key`` |
| ``events.EventError`` | event normalization | ``reason`` (a metrics label) |
| ``opencanary.RecordError`` | OpenCanary/Cowrie record normalization | |
| ``ingest.IngestError`` | ingest parsing | ``reason`` (a metrics label) |
| ``globs.GlobError``, ``filters.FilterError`` | patterns and subscription filters | |
| ``auth.AuthError`` | token checks | ``reason`` (a close reason), ``expired`` |
| ``protocol.ProtocolError`` | client message checks | ``code``, ``message``, ``request_id`` |
| ``client.ClientError`` and kin | the bundled client | ``code``, ``reason`` |
"""

from __future__ import annotations


class NetSentinelError(Exception):
    """Base of every exception this package raises on purpose."""


class ConfigError(NetSentinelError, ValueError):
    """A configuration problem, always naming the key it is about (``config`` re-exports it;
    it lives here so that modules config imports can raise it without importing config)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
