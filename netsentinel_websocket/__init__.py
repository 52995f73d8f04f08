"""netsentinel-websocket: a real-time WebSocket feed of NetSentinel / OpenCanary events.

The NetSentinel host loads :mod:`netsentinel_websocket.plugin` through the ``netsentinel``
entry point group; :mod:`netsentinel_websocket.hookspecs` documents the hooks;
:mod:`netsentinel_websocket.client` is the asyncio client.
"""

__version__ = "0.1.0"
