"""The standalone runner: a small NetSentinel host for the plugin.

It does what NetSentinel does with its plugins: loads every ``netsentinel`` entry point through
pluggy, lets them validate the configuration, mounts their routes on one Tornado application,
and feeds their processors from its consumers (the TCP JSON-lines listener, ``POST /ingest`` and
the ``--demo`` stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pluggy
import tornado.web
from prometheus_client import Gauge
from tornado.http1connection import HTTP1Connection
from tornado.netutil import bind_sockets

from . import hookspecs
from .auth import TokenVerifier
from .config import Settings, validate
from .demo import run_demo
from .fileingest import FileIngest
from .http import BearerHandler
from .httpserver import GuardedHTTPServer, guard_sockets, raise_fd_limit
from .ingest import IngestServer, is_form, parse_body, parse_form, parse_item
from .metrics import PREFIX, Metrics
from .revocation import Revocations
from .workers import Reports, Tops, lagging, listen_error

log = logging.getLogger("netsentinel_websocket.runner")


class AckLog:
    """The runner's own ``netsentinel_alert_acknowledged``: without NetSentinel to record an
    acknowledgement, the runner writes it to its log (an audit trail of who acknowledged what)."""

    @hookspecs.hookimpl
    def netsentinel_alert_acknowledged(self, alert_id: str, subject: str, note: str) -> None:
        log.info(
            "alert acknowledged alert_id=%r sub=%r note=%r",
            alert_id,
            subject,
            note,
            extra={"event": "alert_ack", "alert_id": alert_id, "subject": subject, "note": note},
        )


class Pipeline:
    """Runs every event through the processors in order, as NetSentinel's router does."""

    def __init__(self, processors: list[Any], metrics: Metrics) -> None:
        self.processors = processors
        self.metrics = metrics

    async def feed(self, event: Any) -> None:
        for processor in self.processors:
            event = await processor.process(event)

    async def feed_raw(self, item: Any) -> None:
        """An OpenCanary record or event mapping, normalized as the ingest does."""
        await self.feed(parse_item(item))


MAX_ERRORS_SHOWN = 100  # reasons given back per upload; the rest are only counted
FEED_WAIT = 5.0  # seconds shutdown waits for uploads still feeding the pipeline


@tornado.web.stream_request_body
class IngestHandler(BearerHandler):
    """``POST /ingest``: events or OpenCanary records (JSON, or OpenCanary's webhook form); needs
    a token with the ``ingest`` scope.

    The body is streamed: the token and the bound on uploads in flight are checked on the request
    head, and only then may the body exceed ``server.max_body_bytes`` (up to
    ``websocket.ingest.max_line_bytes``), so an anonymous upload is refused before it is read.
    """

    def initialize(self, runner: Runner) -> None:
        self.runner = runner
        self.verifier = runner.verifier
        self.revocations = runner.revocations
        self.metrics = runner.metrics
        self._body = bytearray()
        self._slot = False

    async def prepare(self) -> None:
        if self.request.method != "POST" or await self.bearer("ingest") is None:
            return
        if self.runner.stopping:
            return self._shutting_down()
        if self.runner.uploads >= self.runner.settings.server.max_uploads:
            self.set_header("Retry-After", "1")
            return self.write_json(503, {"error": "too many uploads in progress"})
        self.runner.uploads += 1
        self._slot = True
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):  # the only kind the runner serves
            connection.set_max_body_size(self.runner.settings.server.max_upload_bytes)

    def data_received(self, chunk: bytes) -> None:
        self._body += chunk  # bounded by the connection's body limit, raised in prepare

    async def post(self) -> None:
        """JSON is answered 202; OpenCanary's default webhook form 200, the only status its
        ``WebhookHandler`` takes for success unless configured otherwise."""
        if self.runner.stopping:  # the body arrived after shutdown began: not accepted
            return self._shutting_down()
        body = bytes(self._body)
        form = is_form(self.request.headers.get("Content-Type", ""), body)
        events, errors = parse_form(body) if form else parse_body(body)
        self._body.clear()
        self._release()
        for _ in errors:
            self.metrics.ingest_rejected.labels("invalid").inc()
        shown: dict[str, Any] = {"errors": errors[:MAX_ERRORS_SHOWN]}
        if len(errors) > MAX_ERRORS_SHOWN:
            shown["errors_omitted"] = len(errors) - MAX_ERRORS_SHOWN
        if errors and not events:
            return self.write_json(400, {"accepted": 0, **shown})
        self.runner.feeding += 1
        try:
            for event in events:
                await self.runner.pipeline.feed(event)
        finally:
            self.runner.feeding -= 1
        self.write_json(200 if form else 202, {"accepted": len(events), **shown})

    def _shutting_down(self) -> None:
        """503 and close: nothing is acknowledged that shutdown might not deliver; the sender
        retries elsewhere (or here once restarted)."""
        self.set_header("Retry-After", "1")
        self.set_header("Connection", "close")
        self.write_json(503, {"error": "shutting down"})

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._release()

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.runner.uploads -= 1


def _listen(key: str, host: str, port: int, backlog: int, shared: bool) -> list[socket.socket]:
    """Bound listening sockets (``shared``: with ``SO_REUSEPORT``, as every worker listens on
    the same port); a failure names the address and the key that set it."""
    try:
        return bind_sockets(port, host or None, backlog=backlog, reuse_port=shared)
    except OSError as exc:
        raise listen_error(key, host, port, exc) from exc


async def _nothing_to_settle() -> None:
    """Without the plugin's broker, handing an event to the pipeline is all there is."""


class Runner:
    """One host process: plugins, web server, consumers."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        demo: bool = False,
        plugins: Sequence[Any] = (),
        worker: int | None = None,
    ) -> None:
        """Load the ``netsentinel`` entry points, or only ``plugins`` when given (tests that run
        several hosts in one process need their own plugin instances); ``worker``: this
        process's index among ``server.workers`` (docs/scaling.md)."""
        self.config = config
        self.settings: Settings = validate(config)
        self.demo = demo
        self.pm = pluggy.PluginManager("netsentinel")
        self.pm.add_hookspecs(hookspecs)
        if plugins:
            for i, plugin in enumerate(plugins):
                self.pm.register(plugin, name="websocket" if i == 0 else None)
        else:
            self.pm.load_setuptools_entrypoints("netsentinel")
        self.pm.register(AckLog(), name="runner-acks")
        self.pm.hook.netsentinel_configure(config=config)
        own = getattr(self.pm.get_plugin("websocket"), "node", None)
        self.verifier = own.verifier if own else TokenVerifier(self.settings.websocket.jwt)
        self.revocations = own.revocations if own else Revocations()
        self.metrics = own.metrics if own else Metrics()
        hook = self.pm.hook
        self.processors = [p for ps in hook.netsentinel_processors(config=config) for p in ps]
        self.pipeline = Pipeline(self.processors, self.metrics)
        routes = [r for rs in self.pm.hook.netsentinel_web_routes(config=config) for r in rs]
        routes.append(("/ingest", IngestHandler, {"runner": self}))
        relay: dict[str, Any] = {hookspecs.HOOK_RELAY_SETTING: self.pm.hook}
        self.app = tornado.web.Application(routes, **relay)
        self.uploads = 0  # POST /ingest bodies being received
        self.feeding = 0  # POST /ingest requests handing their events to the pipeline
        self.stopping = False  # set first in stop(): the ingest answers 503 from then on
        self._http: GuardedHTTPServer | None = None
        self._ingest: IngestServer | None = None
        self._demo_task: asyncio.Task[None] | None = None
        self._files: FileIngest | None = None
        # File ingest persists a line's position once the broker holds its event.
        self._settled = own.broker.flushed if own else _nothing_to_settle
        # The ingest waits while the plugin's subscribers are behind (docs/performance.md).
        self._pressure = own.pressure if own else None
        # Several workers: where this one's readers stand, for the shutdown barrier.
        self._broker = own.broker if own else None
        self._channels = own.channels if own else ()
        if worker is not None:
            Gauge(
                f"{PREFIX}_worker_info",
                "This process's index among server.workers (which worker answered).",
                ["worker", "workers"],
                registry=self.metrics.registry,
            ).labels(str(worker), str(self.settings.server.workers)).set(1)
        self.port: int | None = None
        self.ingest_port: int | None = None

    async def start(self) -> None:
        s = self.settings.server
        ssl_ctx = s.tls.context() if s.tls else None
        raise_fd_limit()
        shared = s.workers > 1
        sockets = guard_sockets(_listen("server.port", s.bind, s.port, s.backlog, shared))
        self.port = sockets[0].getsockname()[1]
        for coro in self.pm.hook.netsentinel_startup(app=self.app):
            await coro
        for processor in self.processors:
            await processor.start()
        self._http = GuardedHTTPServer(
            self.app,
            s.http,
            body_limits={"/ingest": s.max_upload_bytes},
            ssl_options=ssl_ctx,
        )
        self._http.add_sockets(sockets)
        if s.ingest_tcp:
            self._ingest = IngestServer(
                self.pipeline.feed, self.metrics, s.ingest_tcp, self._pressure
            )
            ingest_sockets = guard_sockets(
                _listen(
                    "websocket.ingest.tcp",
                    s.ingest_tcp.host,
                    s.ingest_tcp.port,
                    s.backlog,
                    shared,
                )
            )
            self.ingest_port = ingest_sockets[0].getsockname()[1]
            self._ingest.add_sockets(ingest_sockets)
        if s.ingest_files:
            self._files = FileIngest(
                s.ingest_files, self.pipeline.feed, self._settled, self.metrics, self._pressure
            )
            self._files.start()
        if self.demo:
            self._demo_task = asyncio.create_task(run_demo(self.pipeline.feed_raw))

    async def stop(self, barrier: Callable[[Reports], Awaitable[Tops]] | None = None) -> None:
        """Stop accepting first (``POST /ingest`` answers 503, the listeners close, the TCP
        ingest is drained: what its senders already sent is published), so every event
        acknowledged before is in the broker; then plugins deliver it to their subscribers and
        close them with 1001, and processors stop. ``barrier``: this is one of several workers,
        which all stop at once (:meth:`_meet`)."""
        self.stopping = True
        if self._demo_task is not None:
            self._demo_task.cancel()
        if self._files is not None:
            await self._files.stop()
        if self._http is not None:
            self._http.stop()
        if self._ingest is not None:
            await self._ingest.drain()
        deadline = asyncio.get_running_loop().time() + FEED_WAIT
        while self.feeding and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # uploads still handing events to a (slow) processor
        if barrier is not None:
            await self._meet(barrier)
        for coro in self.pm.hook.netsentinel_shutdown(app=self.app):
            await coro
        for processor in self.processors:
            await processor.stop()
        if self._http is not None:
            await self._http.close_all_connections()

    async def _meet(self, barrier: Callable[[Reports], Awaitable[Tops]]) -> None:
        """Several workers: once this one's events are in the stream and read back, report
        where its readers stand, learn the highest position any worker reached, and read up to
        it (each step within ``websocket.shutdown.grace``), so the 1001 that follows comes
        after every event any worker acknowledged, as with one process."""
        broker = self._broker
        if broker is None:  # no plugin: nothing to report, but the others wait for the word
            await barrier({})
            return
        loop = asyncio.get_running_loop()
        grace = self.settings.websocket.node.shutdown_grace
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(broker.delivered(), grace)
        tops = await barrier({c: broker.position(c) for c in self._channels})
        deadline = loop.time() + grace
        while lagging({c: broker.position(c) for c in self._channels}, tops):
            if loop.time() >= deadline:
                log.warning("shutdown: did not read what the other workers published in time")
                return
            await asyncio.sleep(0.01)
