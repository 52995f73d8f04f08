"""``serve`` with several worker processes on the same ports (``server.workers``).

The parent (:class:`Supervisor`) binds nothing that listens: it holds the ports with bound,
non-listening ``SO_REUSEPORT`` sockets (which resolves port 0 once for every worker and keeps
the port while workers come and go), then starts each worker as a subprocess of the same
command, ``serve --worker-index I``. Each worker listens on the same ports with
``SO_REUSEPORT`` (the kernel spreads connections among them) and is one node of the feed
through the Redis broker, which shares channels, offsets, history and revocations.

Parent and worker talk over the worker's stdin and stdout, one line a message:

- parent -> worker: the configuration as one JSON line (a secret stays off the command line
  and the disk), later ``TOP <json>``; the pipe closing means the parent is gone, and the
  worker stops as on SIGTERM;
- worker -> parent: ``READY <port> <ingest port>`` once it serves, ``DRAINED <json>`` when,
  stopping, it has stopped accepting and its own events are in the stream.

Stopping is one shutdown across the workers: SIGTERM or SIGINT to the parent sends SIGTERM to
every worker; each stops accepting and reports its readers' positions (``DRAINED``); once all
have (or after :data:`BARRIER_WAIT`), the parent sends every worker the highest position of
each channel (``TOP``), and each worker delivers up to it before closing its clients with 1001.
So a subscriber gets every event acknowledged by any worker before its close, as with one
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from .positions import Position

log = logging.getLogger("netsentinel_websocket.workers")

START_WAIT = 60.0  # seconds a worker may take from its start to READY
RESTART_DELAY = 1.0  # seconds before a worker that died while serving is started again
BARRIER_WAIT = 10.0  # seconds stopping workers wait for each other's DRAINED reports
STOP_MARGIN = 30.0  # seconds beyond 3 x websocket.shutdown.grace before a worker is killed

#: What a stopping worker tells the parent, and what it gets back: positions per channel.
Reports = Mapping[str, Position]
Tops = Mapping[str, Mapping[str, int]]


def listen_error(key: str, host: str, port: int, exc: OSError) -> OSError:
    """An error naming the address and the key that set it ("Address already in use" alone
    does not say which of the two ports)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    return OSError(exc.errno, f"cannot listen on {where} ({key}): {exc.strerror}")


def reserve(key: str, host: str, port: int) -> list[socket.socket]:
    """Bound, non-listening ``SO_REUSEPORT`` sockets on the addresses
    ``tornado.netutil.bind_sockets`` would listen on. They receive no connection (only
    listening sockets do), but fix port 0 to one port for every worker and keep any other
    program off the port while workers restart."""
    held: list[socket.socket] = []
    infos = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    try:
        for family, kind, proto, _, address in sorted(dict.fromkeys(infos), key=lambda i: i[0]):
            if held and port == 0:  # every family on the port the first one got
                address = (address[0], held[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:  # as bind_sockets: IPv6 partly disabled (docker)
                if exc.errno == errno.EADDRNOTAVAIL and host == "localhost" and address[0] == "::1":
                    held.pop().close()
                    continue
                raise
    except OSError as exc:
        for sock in held:
            sock.close()
        raise listen_error(key, host, port, exc) from exc
    return held


def host_port(host: str, port: int) -> str:
    """``websocket.ingest.tcp`` text for an address (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_config(config: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Worker ``index``'s configuration: a configured ``websocket.node_id`` gets ``-<index>``
    (unset, each worker is hostname-pid already), and only worker 0 follows log files: two
    followers of one file would race for its saved read position."""
    own = dict(config)
    if own.get("websocket.node_id"):
        own["websocket.node_id"] = f"{own['websocket.node_id']}-{index}"
    if index > 0:
        own["websocket.ingest.files"] = []
    return own


def highest(reports: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The highest offset reported per channel and epoch (``DRAINED`` reports as sent: channel
    -> ``[epoch, offset]``)."""
    tops: dict[str, dict[str, int]] = {}
    for report in reports:
        for channel, (epoch, offset) in report.items():
            per_epoch = tops.setdefault(channel, {})
            per_epoch[epoch] = max(offset, per_epoch.get(epoch, 0))
    return tops


def lagging(positions: Reports, tops: Tops) -> list[str]:
    """The channels whose reader is behind a top of its own epoch (a worker in another epoch,
    e.g. an outage epoch of its own, cannot catch up with it and is not waited for)."""
    return [
        channel
        for channel, position in positions.items()
        if position.offset < tops.get(channel, {}).get(position.epoch, 0)
    ]


class _WorkerTag(logging.Filter):
    """Which worker wrote a line: a ``worker`` field in JSON logs, ``[worker N]`` in text."""

    def __init__(self, index: int, text: bool) -> None:
        super().__init__()
        self.index, self.text = index, text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text:
            record.msg, record.args = f"[worker {self.index}] {record.getMessage()}", None
        else:
            record.worker = self.index
        return True


def tag_logs(index: int, log_format: str) -> None:
    """Tag every line this worker logs with its index (after ``setup_logging``)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index, log_format == "text"))


# --- the worker's end -------------------------------------------------------------------------


def read_config(stream: IO[bytes]) -> dict[str, Any]:
    """The configuration the parent wrote as the first line of stdin. The parent writes nothing
    more until this worker reports DRAINED, so a buffered read takes no later line."""
    line = stream.readline()
    if not line:
        raise OSError(errno.EPIPE, "no configuration on stdin (--worker-index is for serve)")
    config = json.loads(line)
    if not isinstance(config, dict):
        raise OSError(errno.EINVAL, "the configuration on stdin is not an object")
    return config


class WorkerLink:
    """A worker's end of its pipes: it stops when the parent goes, and meets the other workers
    at the shutdown barrier."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._tops: asyncio.Future[Tops] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self._tops = loop.create_future()
        self._task = asyncio.create_task(self._listen(reader))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            kind, _, body = line.decode("utf-8", "replace").partition(" ")
            if kind == "TOP" and self._tops is not None and not self._tops.done():
                self._tops.set_result(json.loads(body))
        log.info("the supervisor closed the pipe: stopping")
        self._stop.set()
        if self._tops is not None and not self._tops.done():
            self._tops.set_result({})  # nobody to meet

    async def barrier(self, positions: Reports) -> Tops:
        """Report this worker's positions (it accepts nothing any more, and its own events are
        in the stream), then wait for the highest of every worker's, at most
        :data:`BARRIER_WAIT` seconds (then: ``{}``, nothing to wait for)."""
        assert self._tops is not None, "start() first"
        if self._tops.done():  # the supervisor is gone
            return self._tops.result()
        report = {c: [p.epoch, p.offset] for c, p in positions.items()}
        try:
            print("DRAINED " + json.dumps(report), flush=True)
        except BrokenPipeError:  # gone meanwhile; what is left unflushed goes nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return {}
        try:
            return await asyncio.wait_for(asyncio.shield(self._tops), BARRIER_WAIT)
        except asyncio.TimeoutError:
            log.warning("shutdown: no word from the other workers within %g s", BARRIER_WAIT)
            return {}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the parent --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    report: dict[str, Any] | None = None  # its DRAINED positions
    reported: asyncio.Event = field(default_factory=asyncio.Event)


async def _first(*waits: Awaitable[Any], timeout: float | None = None) -> None:
    """Return when the first of ``waits`` is done (or after ``timeout``); cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Supervisor:
    """Starts ``count`` workers, restarts one that dies while serving, and stops them all as
    one shutdown. A worker that exits before it is ready (at start, or restarted) stops the
    whole serve with an error: a configuration or environment problem, not bad luck."""

    def __init__(
        self,
        argv: Callable[[int], list[str]],
        config: Mapping[str, Any],
        count: int,
        shutdown_grace: float,
    ) -> None:
        """``argv(index)``: the command line of worker ``index``; ``config``: what every
        worker gets on stdin (ports already fixed)."""
        self._argv = argv
        self._config = json.dumps(dict(config)).encode() + b"\n"
        self._workers = [_Worker(i) for i in range(count)]
        # a worker's stop: delivered, caught up, clients drained, each within the grace
        self._stop_wait = 3 * shutdown_grace + STOP_MARGIN
        self._stopping = asyncio.Event()
        self._all_ready = asyncio.Event()
        self.failure: str | None = None

    def stop(self) -> None:
        """Begin the shutdown (the SIGTERM/SIGINT handler)."""
        self._stopping.set()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None]

    async def run(self, on_ready: Callable[[], None]) -> int:
        """Serve until :meth:`stop`; ``on_ready`` once every worker serves. 0 when every worker
        stopped cleanly, 1 otherwise (the reason is logged)."""
        keepers = [asyncio.create_task(self._keep(w)) for w in self._workers]
        await _first(self._all_ready.wait(), self._stopping.wait())
        if not self._stopping.is_set():
            on_ready()
        await self._stopping.wait()
        await self._meet()
        clean = all(await asyncio.gather(*keepers))
        if self.failure is not None:
            log.error("%s: stopped every worker", self.failure)
            return 1
        return 0 if clean else 1

    async def _keep(self, w: _Worker) -> bool:
        """Worker ``w`` for the whole serve; whether it stopped cleanly at the end."""
        try:
            return await self._supervise(w)
        except Exception as exc:  # e.g. the command cannot be started: stop the others
            self.failure = self.failure or f"worker {w.index}: {exc!r}"
            self._stopping.set()
            if w.process is not None and w.process.returncode is None:
                w.process.kill()
                await w.process.wait()
            return False

    async def _supervise(self, w: _Worker) -> bool:
        while True:
            process = await self._spawn(w)
            reading = asyncio.create_task(self._read(w, process))
            await _first(w.ready.wait(), process.wait(), self._stopping.wait(), timeout=START_WAIT)
            if not w.ready.is_set() and not self._stopping.is_set():
                code = process.returncode
                self.failure = self.failure or (
                    f"worker {w.index} was not ready within {START_WAIT:g} s"
                    if code is None
                    else f"worker {w.index} exited with {code} before it was ready"
                )
                self._stopping.set()
            if not self._stopping.is_set():
                await _first(process.wait(), self._stopping.wait())
            if self._stopping.is_set():
                return await self._end(w, process, reading)
            await reading
            if process.stdin is not None:
                process.stdin.close()
            log.error(
                "worker %d (pid %d) exited with %s while serving: starting it again in %g s",
                w.index,
                process.pid,
                process.returncode,
                RESTART_DELAY,
            )
            await _first(self._stopping.wait(), timeout=RESTART_DELAY)
            if self._stopping.is_set():
                return True  # its death was logged; the others stop as usual

    async def _spawn(self, w: _Worker) -> asyncio.subprocess.Process:
        w.ready.clear()
        w.reported.clear()
        w.report = None
        process = await asyncio.create_subprocess_exec(
            *self._argv(w.index), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        w.process = process
        assert process.stdin is not None
        process.stdin.write(self._config)  # kept open: its end tells the worker we are gone
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        log.info("worker %d started (pid %d)", w.index, process.pid)
        return process

    async def _read(self, w: _Worker, process: asyncio.subprocess.Process) -> None:
        """The worker's messages until its stdout closes; other lines are passed on."""
        assert process.stdout is not None
        while line := await process.stdout.readline():
            kind, _, body = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
            if kind == "READY":
                w.ready.set()
                if all(x.ready.is_set() for x in self._workers):
                    self._all_ready.set()
            elif kind == "DRAINED":
                w.report = json.loads(body)
                w.reported.set()
            else:
                sys.stdout.write(line.decode("utf-8", "replace"))
                sys.stdout.flush()

    async def _meet(self) -> None:
        """The shutdown barrier: wait until every running worker reported DRAINED (at most
        :data:`BARRIER_WAIT`), then send them all the highest positions."""
        running = [w for w in self._workers if w.process and w.process.returncode is None]
        waits = [_first(w.reported.wait(), w.process.wait()) for w in running if w.process]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), BARRIER_WAIT)
        tops = highest([w.report for w in running if w.report is not None])
        line = ("TOP " + json.dumps(tops) + "\n").encode()
        for w in running:
            if w.process is not None and w.process.stdin is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    w.process.stdin.write(line)

    async def _end(
        self, w: _Worker, process: asyncio.subprocess.Process, reading: asyncio.Task[None]
    ) -> bool:
        """SIGTERM (unless it is gone), wait, SIGKILL after the stop wait; clean when it
        exited 0, or died of that SIGTERM before it could handle it (it accepted nothing)."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._stop_wait)
        except asyncio.TimeoutError:
            log.error("worker %d did not stop within %g s: killed", w.index, self._stop_wait)
            process.kill()
            await process.wait()
        await reading
        if process.stdin is not None:
            process.stdin.close()
        if process.returncode in (0, -signal.SIGTERM):
            return True
        log.error("worker %d exited with %s while stopping", w.index, process.returncode)
        return False
