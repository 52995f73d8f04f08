"""The hooks a NetSentinel host and this plugin share (pluggy project name ``netsentinel``).

A host loads plugins with::

    pm = pluggy.PluginManager("netsentinel")
    pm.add_hookspecs(netsentinel_websocket.hookspecs)
    pm.load_setuptools_entrypoints("netsentinel")

and calls the hooks below by keyword. This module is the documented contract; the
implementation lives in :mod:`netsentinel_websocket.plugin`.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("netsentinel")
hookimpl = pluggy.HookimplMarker("netsentinel")

#: Key in the host's ``tornado.web.Application.settings`` holding ``pm.hook``, so a plugin can
#: call hooks (``netsentinel_alert_acknowledged``) that other plugins or the host implement.
HOOK_RELAY_SETTING = "netsentinel.hook"


@hookspec
def netsentinel_configure(config: dict[str, Any]) -> None:
    """Validate this plugin's keys of the whole NetSentinel configuration mapping.

    Raise an error naming the bad key; the host refuses to start.
    """


@hookspec
def netsentinel_web_routes(config: dict[str, Any]) -> list[Any]:  # type: ignore[empty-body]
    """Return Tornado URL rules to add to the host's ``tornado.web.Application``."""


@hookspec
def netsentinel_processors(config: dict[str, Any]) -> list[Any]:  # type: ignore[empty-body]
    """Return pipeline processors: objects with ``name``, ``async start()``, ``async stop()`` and
    ``async process(event)`` returning the event unchanged."""


@hookspec
async def netsentinel_startup(app: Any) -> None:
    """Called (and awaited) by the host once its Application is built, before serving.

    ``app`` is the host's ``tornado.web.Application``; ``app.settings[HOOK_RELAY_SETTING]`` may
    hold the host's ``pm.hook``.
    """


@hookspec
async def netsentinel_shutdown(app: Any) -> None:
    """Called (and awaited) by the host when it stops; clients are closed with 1001."""


@hookspec
def netsentinel_alert_acknowledged(alert_id: str, subject: str, note: str) -> None:
    """Called BY this plugin when a client with ``alerts:ack`` acknowledges an alert.

    ``subject`` is the token's ``sub``; the host (or another plugin) records it. Without any
    implementation the client gets the error ``unavailable``; the standalone runner registers
    one that writes the acknowledgement to its log.
    """
