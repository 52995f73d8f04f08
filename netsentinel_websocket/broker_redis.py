"""Redis Streams broker: one feed shared by every node that points at the same Redis.

Each channel is a stream; an entry holds a run of events (streamentry.py), its ID the run's
last offset. A Lua script adds the run's count to the channel's counter and XADDs under it in
one step, so offsets go up by exactly 1 per event and are the same on every node; the
channel's epoch lives in a key created when the stream starts, so a Redis that lost its data
shows up as a new epoch (clients holding an old position get a ``gap``). Every node writes
what its own pipeline routes and delivers only what it reads back from the stream, so a
subscriber on any node sees every node's events once, in stream order.

While Redis is unreachable the node delivers its own new events at once under a node-local
*outage epoch* and keeps them (bounded) for the stream, tagged; read back, a tagged entry goes
to history but not to this node's subscribers again (they had it). A stream that lost its data
(a new epoch), or entries trimmed before this node read them, are reported to the hub, which
sends its subscribers a ``gap``. docs/scaling.md states the guarantees.

Revocations are a hash (what is in force, so a restart keeps them) and a short stream of
changes that the reader follows with the channels, so every node learns one within a read; a
node (re)connecting loads the hash and the log's position in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from .broker import BrokerUnavailable, Deliver, Lost
from .errors import ConfigError
from .filefollow import file_source
from .history import History
from .metrics import Metrics
from .positions import Position, PreparedEvent, Publication, Recovery, recover_from
from .revocation import Revocation, RevocationError, Revocations
from .streamentry import MAX_ENTRY_EVENTS, entry_publications, join_events, join_times

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError:  # the optional extra is missing: RedisBroker() says how to install it
    aioredis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "netsentinel:ws:"
BLOCK_MS = 1000  # XREAD block; an idle reader re-checks the epochs this often
READ_COUNT = 20  # entries per stream per XREAD: at most 20 x WRITE_BATCH events in one reply
# events per pipeline round trip (a script call and an entry per run: a run is at most this)
WRITE_BATCH = MAX_ENTRY_EVENTS
MIN_STREAM_LENGTH = 10_000  # offsets: room for readers behind a burst, even with a tiny history
SOCKET_TIMEOUT = 5.0  # a Redis that stalls this long is an outage (must exceed BLOCK_MS)
CONNECT_TIMEOUT = 2.0
BACKOFF = (0.1, 2.0)  # reconnect delay: first, cap (doubling, +-20% jitter)
CATCH_UP_WAIT = 2.0  # how long recover() waits for the reader to reach a client's position
SOURCE_TTL = 86400  # seconds a node's publish sequence is remembered for retries
FILE_SOURCE_TTL = 7 * 86400  # seconds a followed file's last published line is remembered
REVOCATION_LOG = 10_000  # changes kept in the revocation log (readers follow it live)
# The largest sequence part of a stream entry ID: an XREAD from "<offset>-<this>" returns the
# entries past that offset, also when a buggy writer added one as "<offset>-1" (ours are "-0").
LAST_SEQUENCE = 2**64 - 1

# KEYS: epoch, seq, stream. A missing epoch or counter means the stream's data is gone: start
# a new epoch (ARGV[1]) so no node numbers events into a sequence clients cannot trust.
_ENSURE_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch or redis.call('EXISTS', KEYS[2]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
end
"""

SYNC_SCRIPT = _ENSURE_EPOCH + "return {epoch, redis.call('GET', KEYS[2])}\n"

# KEYS: epoch, seq, stream, the run's source key. ARGV: new epoch, stream bound (offsets),
# source sequences (space-separated, ascending), the first and the last of them, the events'
# JSON and received times (streamentry's ``j`` and ``t``), source TTL, tag ('' for none: events
# the node showed during an outage carry one, field ``v``, so the node does not deliver them
# twice). One call adds a run of one channel's events from one source as one entry (see
# streamentry.py). A retried publish (reply lost with the connection) carries sequences the
# source key has seen: those events are not added twice. The source is this node process, or
# for lines of a followed file that file (the sequence grows with the line's offset), so a
# line read again after a crash is not added twice, whichever process reads it. The stream is
# trimmed by ID (MINID ~): the entries holding the last ARGV[2] offsets stay.
PUBLISH_SCRIPT = (
    _ENSURE_EPOCH
    + """
local stored = tonumber(redis.call('GET', KEYS[4]) or '0')
if stored >= tonumber(ARGV[5]) then
  return {epoch, 0}
end
local j, t = ARGV[6], ARGV[7]
local count = 1
for _ in string.gmatch(t, ' ') do count = count + 1 end
if stored >= tonumber(ARGV[4]) then
  local skip, jp, tp = 0, 0, 0
  for s in string.gmatch(ARGV[3], '%d+') do
    if tonumber(s) > stored then break end
    skip = skip + 1
    jp = string.find(j, '\\n', jp + 1, true)
    tp = string.find(t, ' ', tp + 1, true)
  end
  j, t, count = string.sub(j, jp + 1), string.sub(t, tp + 1), count - skip
end
local offset = redis.call('INCRBY', KEYS[2], count)
local id = string.format('%d-0', offset)
local keep = string.format('%d', math.max(offset - tonumber(ARGV[2]) + 1, 0))
if ARGV[9] == '' then
  redis.call('XADD', KEYS[3], 'MINID', '~', keep, id, 'j', j, 't', t)
else
  redis.call('XADD', KEYS[3], 'MINID', '~', keep, id, 'j', j, 't', t, 'v', ARGV[9])
end
redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[8])
return {epoch, offset}
"""
)


def split_url(url: str) -> tuple[str, str]:
    """The address for the redis client and the key prefix (``?prefix=`` query parameter)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def redact_url(url: str) -> str:
    """``url`` without its password (in the userinfo or a ``password=`` parameter)."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*:")))


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel and wait; redis-py can swallow a cancellation that meets a socket timeout
    (asyncio.timeout), so a task still running is asked again."""
    while tasks:
        for task in tasks:
            task.cancel()
        _, tasks = await asyncio.wait(tasks, timeout=0.1)


def _new_epoch() -> str:
    return secrets.token_hex(6)


def _revocation(data: bytes) -> Revocation | None:
    """A stored revocation; None (and a warning) for an entry no node could have written."""
    try:
        return Revocation.from_dict(orjson.loads(data))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed revocation in redis")
        return None


class _Channel:
    """One stream as this node follows it."""

    __slots__ = (
        "name",
        "base",
        "keys",
        "source_key",
        "epoch",
        "offset",
        "synced",
        "ring",
        "local",
        "sent",
        "written",
        "held",
        "tags",
    )

    def __init__(
        self, name: str, prefix: str, token: str, history_size: int, history_bytes: int
    ) -> None:
        base = f"{prefix}{{{name}}}:"  # hash tag: a channel's keys share one Cluster slot
        self.name = name
        self.base = base
        self.keys = (base + "epoch", base + "seq", base + "stream")
        self.source_key = f"{base}src:{token}"
        self.epoch = ""  # the stream's epoch ("" until first synced)
        self.offset = 0  # last stream offset delivered to the hub
        self.synced = False
        self.ring = History(history_size, history_bytes)  # recent deliveries
        self.local: Position | None = None  # outage epoch, until the stream delivers again
        self.sent = 0  # this node's publish sequence on the channel
        self.written = Position("", 0)  # the stream position of this node's last write
        self.held = 0  # events shown in the outage epoch and not written to the stream yet
        self.tags: set[bytes] = set()  # the tags of those shown events not read back yet


class _Outgoing:
    """An event on its way to the stream, with the source key and sequence that keep it from
    being added twice."""

    __slots__ = ("channel", "source", "seq", "ttl", "prepared", "shown", "tag")

    def __init__(self, channel: _Channel, prepared: PreparedEvent) -> None:
        self.channel = channel
        self.prepared = prepared
        self.shown = False  # delivered locally under the outage epoch
        self.tag = ""  # set when shown and kept for the stream: read back, it is not delivered
        from_file = file_source(prepared.event.get("id"))
        if from_file is None:
            channel.sent += 1
            self.source, self.seq, self.ttl = channel.source_key, channel.sent, SOURCE_TTL
        else:
            name, self.seq = from_file
            self.source, self.ttl = channel.base + "src:" + name, FILE_SOURCE_TTL


def _runs(batch: Sequence[_Outgoing]) -> list[list[_Outgoing]]:
    """The batch as runs, one stream entry each: each channel's events in order, a new run
    where the source or the tagging changes (each run needs one source key and one tag)."""
    runs: list[list[_Outgoing]] = []
    open_runs: dict[str, list[_Outgoing]] = {}
    for item in batch:
        run = open_runs.get(item.channel.name)
        if run is None or run[0].source != item.source or bool(run[0].tag) != bool(item.tag):
            run = open_runs[item.channel.name] = []
            runs.append(run)
        run.append(item)
    return runs


class RedisBroker:
    """Redis Streams broker (``websocket.broker: "redis://..."``)."""

    def __init__(
        self,
        url: str,
        history_size: int,
        *,
        history_bytes: int = 0,
        metrics: Metrics,
        buffer_size: int,
        channels: Sequence[str],
        max_event_bytes: int = 0,
    ) -> None:
        """``channels`` are followed from the start (others are followed once touched); an
        entry holding an event over ``max_event_bytes`` (0: no bound) is skipped."""
        if aioredis is None:
            raise ConfigError(
                "websocket.broker",
                "a redis:// broker needs the redis package: "
                "pip install 'netsentinel-websocket[redis]'",
            )
        self._url, self.prefix = split_url(url)
        self.safe_url = redact_url(url)
        self._password = urlsplit(self._url).password
        self._history_size = history_size
        self._history_bytes = history_bytes
        self._max_event_bytes = max_event_bytes
        self._maxlen = max(history_size, MIN_STREAM_LENGTH)
        self._metrics = metrics
        self._buffer_size = buffer_size
        self._token = secrets.token_hex(8)
        self._channels: dict[str, _Channel] = {}
        self._by_stream: dict[bytes, _Channel] = {}
        for name in channels:
            self._channel(name)
        self._outbox: deque[_Outgoing] = deque()
        self._wake = asyncio.Event()
        self._accepted = 0  # events ever put in the outbox
        self._written = 0  # of those, events the stream has taken (or skipped as repeated)
        self._progress = asyncio.Event()  # set (and replaced) after each written batch
        self._took = asyncio.Event()  # set (and replaced) after each batch read from the streams
        self._deliver: Deliver | None = None
        self._lost: Lost | None = None
        self._tags = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()
        self._client: Any = None  # pooled: writes, syncs, history reads
        self._ready = False
        self._connected_once = False
        self._error: str | None = None
        self._since = time.time()
        self._dropped = 0
        self._op = "connect"
        self._publish_sha = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()
        self._sync_sha = hashlib.sha1(SYNC_SCRIPT.encode()).hexdigest()
        revocations = f"{self.prefix}{{revocations}}:"  # one slot: changed in one transaction
        self._revocation_set, self._revocation_log = revocations + "set", revocations + "log"
        self._revocation_seen = "0-0"  # the last change read from the log
        self._revocations = Revocations()  # the node's, once it follows them

    # --- the Broker interface ---

    async def start(self, deliver: Deliver, lost: Lost | None = None) -> None:
        """Connect in the background; returns after the first attempt, whatever its outcome."""
        self._deliver, self._lost = deliver, lost
        self._metrics.broker_up.set(0)
        self._task = asyncio.create_task(self._run())
        await self._attempted.wait()

    async def stop(self) -> None:
        """Give the writer a moment to put what the pipeline handed over into the stream."""
        if self._outbox and self._ready:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.flushed(), CATCH_UP_WAIT)
        if self._task is not None:
            await _cancel({self._task})
            self._task = None
        self._deliver = None

    def publish(self, channel: str, prepared: PreparedEvent) -> None:
        """Lines of followed files are never dropped from a full outbox: their follower waits
        (:meth:`flushed`) before it reads on, so it adds at most one batch beyond the bound."""
        item = _Outgoing(self._channel(channel), prepared)
        if not self._ready:
            self._show(item)
            if len(self._outbox) >= self._buffer_size and item.source == item.channel.source_key:
                self._dropped += 1
                self._metrics.broker_dropped.inc()
                return
            self._hold(item)
            self._accept(item)
            self._metrics.broker_buffered.set(len(self._outbox))
            return
        self._accept(item)
        self._wake.set()

    async def flushed(self) -> None:
        """Return once every event published before the call is in the stream (or was found
        there already); through an outage this waits for Redis to return."""
        target = self._accepted
        while self._written < target:
            await self._progress.wait()

    async def delivered(self) -> None:
        """Written, then read back: every channel's reader is at (or past) this node's last
        write. Returns at once while Redis is unreachable: events shown in the outage epoch
        were delivered then, and the rest cannot be. Polls (shutdown only)."""
        target = self._accepted
        while self._ready and (self._written < target or self._behind()):
            await asyncio.sleep(0.01)

    def _behind(self) -> bool:
        """Whether a reader has not read back this node's last write on its channel."""
        return any(
            ch.written.epoch == ch.epoch and ch.offset < ch.written.offset
            for ch in self._channels.values()
        )

    async def recover(self, channel: str, since: Position | None) -> Recovery:
        ch = self._channel(channel)
        if since is None:
            return Recovery((), self.position(channel), True)
        # A client coming from a node whose reader is ahead of ours: let ours catch up.
        deadline = time.monotonic() + CATCH_UP_WAIT
        while ch.epoch == since.epoch and ch.offset < since.offset and self._ready:
            try:  # woken by each batch the reader takes
                await asyncio.wait_for(self._took.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        top = Position(ch.epoch, ch.offset)
        found = recover_from(ch.ring, top, since)
        if found.recovered or since.epoch != top.epoch or not 0 <= since.offset <= top.offset:
            return found
        entries = await self._ready_client().xrange(  # from the entry holding since + 1
            ch.keys[2], f"{since.offset + 1}-0", f"{top.offset}-0"
        )
        pubs = [  # an entry the reader skipped raises: the hub answers with a gap
            pub
            for entry_id, fields in entries
            for pub in entry_publications(
                ch.name, top.epoch, entry_id, fields, self._max_event_bytes
            )
            if pub.offset > since.offset
        ]
        if ch.epoch != top.epoch or not pubs or pubs[0].offset != since.offset + 1:
            return Recovery((), self.position(channel), False)  # epoch changed or trimmed
        pubs += [p for p in ch.ring if p.offset > top.offset]  # delivered while we read
        return Recovery(pubs, Position(ch.epoch, ch.offset), len(pubs) == ch.offset - since.offset)

    def position(self, channel: str) -> Position:
        ch = self._channel(channel)
        return ch.local or Position(ch.epoch, ch.offset)

    @property
    def ready(self) -> bool:
        return self._ready

    def state(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "state": "ready"
            if self._ready
            else ("unavailable" if self._connected_once else "connecting"),
            "ready": self._ready,
            "url": self.safe_url,
            "prefix": self.prefix,
            "since": self._since,
            "error": self._error,
            "buffered": len(self._outbox),
            "dropped": self._dropped,
        }

    def follow_revocations(self, revocations: Revocations) -> None:
        self._revocations = revocations

    async def revoke(self, revocation: Revocation) -> None:
        """In force here at once (a full set refuses it before Redis is asked), then in the
        hash and the log; if Redis fails it is lifted here again."""
        client = self._ready_client()
        self._revocations.add(revocation, time.time())
        data = orjson.dumps(revocation.as_dict())
        try:
            await self._change(client, {"op": "add", "r": data}, hset=(revocation.id, data))
        except BrokerUnavailable:
            self._revocations.lift(revocation.id)
            raise

    async def lift(self, revocation_id: str) -> bool:
        removed = await self._change(self._ready_client(), {"op": "lift", "id": revocation_id})
        return self._revocations.lift(revocation_id) is not None or bool(removed)

    async def _change(
        self, client: Any, change: dict[str, Any], hset: tuple[str, bytes] | None = None
    ) -> int:
        """Store a revocation (``hset``) or delete one (``change["id"]``) and log the change,
        in one transaction; what HSET or HDEL answered."""
        pipe = client.pipeline(transaction=True)
        if hset is None:
            pipe.hdel(self._revocation_set, change["id"])
        else:
            pipe.hset(self._revocation_set, *hset)
        pipe.xadd(self._revocation_log, change, maxlen=REVOCATION_LOG, approximate=True)
        try:
            answer, _ = await pipe.execute()
        except Exception as exc:  # any failure: the change is not recorded
            raise BrokerUnavailable(f"redis unavailable: {exc.__class__.__name__}") from None
        return int(answer)

    def _ready_client(self) -> Any:
        client = self._client
        if client is None or not self._ready:
            raise BrokerUnavailable(f"redis unavailable: {self._error}")
        return client

    # --- connection supervision ---

    async def _run(self) -> None:
        """Connect, sync, then read and write until either fails; retry with back-off."""
        delay = BACKOFF[0]
        while True:
            reader = writer = None
            try:
                self._op = "connect"
                reader, writer = self._new_client(True), self._new_client(False)
                await self._connect(reader, writer)
                self._client = writer
                self._set_ready(None)
                delay = BACKOFF[0]
                await self._serve(reader, writer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure is an outage: retry, never crash the node
                self._set_ready(exc)
            finally:
                self._client = None
                for client in (reader, writer):
                    if client is not None:
                        with contextlib.suppress(Exception):
                            await client.aclose()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF[1])

    def _new_client(self, single: bool) -> Any:
        return aioredis.Redis.from_url(
            self._url,
            single_connection_client=single,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # reconnection is ours, with the outage semantics
        )

    async def _connect(self, reader: Any, writer: Any) -> None:
        await reader.ping()
        await writer.script_load(PUBLISH_SCRIPT)
        await writer.script_load(SYNC_SCRIPT)
        for ch in self._channels.values():
            ch.synced = False
        self._op = "sync"
        await self._sync(writer, list(self._channels.values()))
        self._op = "revocations"
        await self._load_revocations(writer)

    async def _serve(self, reader: Any, writer: Any) -> None:
        tasks = {
            asyncio.create_task(self._read(reader)): "read",
            asyncio.create_task(self._write(writer)): "publish",
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(set(tasks))
        task = done.pop()
        self._op = tasks[task]
        task.result()

    def _set_ready(self, exc: Exception | None) -> None:
        """Record a state change; on an outage, show the events not yet in the stream."""
        self._attempted.set()
        if exc is None:
            log.info("redis broker connected to %s (prefix %s)", self.safe_url, self.prefix)
            self._ready, self._connected_once, self._error = True, True, None
            self._since = time.time()
            self._metrics.broker_up.set(1)
            self._wake.set()
            return
        self._metrics.broker_errors.labels(self._op).inc()
        error = f"{self._op}: {exc.__class__.__name__}: {exc}"
        if self._password:
            error = error.replace(self._password, "***")
        if self._ready or self._error is None:
            log.warning("redis broker unavailable (%s); retrying", error)
            self._since = time.time()
        self._ready, self._error = False, error
        self._metrics.broker_up.set(0)
        for item in self._outbox:
            if not item.shown:
                self._show(item)
                self._hold(item)
        self._metrics.broker_buffered.set(len(self._outbox))

    # --- reading: the stream -> the hub ---

    async def _read(self, reader: Any) -> None:
        while True:
            channels = list(self._channels.values())
            unsynced = [ch for ch in channels if not ch.synced]
            if unsynced:
                await self._sync(reader, unsynced)
            streams = {ch.keys[2]: f"{ch.offset}-{LAST_SEQUENCE}" for ch in channels}
            streams[self._revocation_log] = self._revocation_seen
            reply = await reader.xread(streams, count=READ_COUNT, block=BLOCK_MS)
            if not reply:
                await self._check_epochs(reader, channels)
                continue
            now = time.time()
            for key, entries in reply:
                if key == self._revocation_log.encode():
                    self._follow_revocations(entries, now)
                    continue
                ch = self._by_stream[key]
                for entry_id, fields in entries:
                    try:
                        pubs = entry_publications(
                            ch.name, ch.epoch, entry_id, fields, self._max_event_bytes
                        )
                        if pubs[0].offset <= ch.offset:  # ours never overlap what came before
                            raise ValueError(
                                f"stream entry {entry_id!r}: from offset {pubs[0].offset}, "
                                f"after {ch.offset}"
                            )
                    except ValueError as exc:
                        self._skip(ch, entry_id, exc)
                        continue
                    tag = fields.get(b"v")
                    self._take(ch, pubs, now, tag is not None and tag in ch.tags)
            self._took.set()
            self._took = asyncio.Event()

    def _take(self, ch: _Channel, pubs: list[Publication], now: float, shown: bool) -> None:
        """Deliver the next entry's publications read from the stream (XREAD gives entries
        past ours); an entry this node ``shown`` during an outage goes to history only: its
        subscribers had it then, and those that came later stand in the outage epoch, after
        it. The outage epoch ends when the last of them is back."""
        if pubs[0].offset != ch.offset + 1:  # trimmed before this node read it
            self._metrics.broker_errors.labels("trimmed").inc()
            log.warning("channel %s: reader fell behind the stream bound", ch.name)
            ch.ring.clear()
            self._report_loss(ch, Position(ch.epoch, pubs[0].offset - 1))
        ch.offset = pubs[-1].offset
        self._end_outage(ch)
        lag, deliver = self._metrics.broker_lag, None if shown else self._deliver
        for pub in pubs:
            ch.ring.append(pub)
            lag.observe(now - pub.prepared.received)
            if deliver is not None:
                deliver(pub)

    def _skip(self, ch: _Channel, entry_id: bytes, why: ValueError) -> None:
        """An entry no node of this version writes (a buggy or older node of the feed): the
        reader goes on past it, counts it and logs why (never its content); its offsets are
        lost, so subscribers get a gap over them, as over a trimmed entry."""
        self._metrics.broker_errors.labels("entry").inc()
        log.warning("channel %s: skipping %s", ch.name, why)
        last = int(entry_id.partition(b"-")[0])
        if last > ch.offset:
            self._report_loss(ch, Position(ch.epoch, last))
            ch.offset = last
            self._end_outage(ch)

    async def _sync(self, client: Any, channels: Iterable[_Channel]) -> None:
        """Learn each channel's epoch and top; a new epoch restarts reading at its offset 1."""
        channels = list(channels)
        pipe = client.pipeline(transaction=False)
        for ch in channels:
            pipe.evalsha(self._sync_sha, 3, *ch.keys, _new_epoch())
        for ch, (epoch, top) in zip(channels, await pipe.execute(), strict=True):
            epoch = epoch.decode()
            if epoch != ch.epoch:
                lost = bool(ch.epoch)  # what the old stream held past ch.offset is gone
                if lost:
                    log.warning("channel %s: new stream epoch (Redis lost its data)", ch.name)
                ch.offset = 0 if lost else int(top)  # first sync: live from the top
                ch.epoch = epoch
                ch.ring.clear()
                if lost:
                    self._report_loss(ch, Position(epoch, 0))
            ch.synced = True

    async def _load_revocations(self, client: Any) -> None:
        """Hold what the hash holds (changes missed while away included) and follow the log
        from its end; forget revocations of tokens that expired meanwhile."""
        pipe = client.pipeline(transaction=True)
        pipe.hgetall(self._revocation_set)
        pipe.xrevrange(self._revocation_log, count=1)
        stored, last = await pipe.execute()
        now = time.time()
        found = [r for r in map(_revocation, stored.values()) if r is not None]
        lapsed = [r.id for r in found if r.lapsed(now)]
        if lapsed:
            await client.hdel(self._revocation_set, *lapsed)
        self._revocation_seen = last[0][0].decode() if last else "0-0"
        self._revocations.replace([r for r in found if not r.lapsed(now)], now)

    def _follow_revocations(self, entries: list[Any], now: float) -> None:
        """Changes other nodes (and this one) logged: put in force or lift."""
        for entry_id, fields in entries:
            self._revocation_seen = entry_id.decode()
            if fields.get(b"op") == b"lift":
                self._revocations.lift(fields.get(b"id", b"").decode())
            elif (revocation := _revocation(fields.get(b"r", b""))) is not None:
                try:
                    self._revocations.add(revocation, now)
                except RevocationError as exc:
                    log.warning("revocation %s not applied: %s", revocation.id, exc)

    async def _check_epochs(self, client: Any, channels: list[_Channel]) -> None:
        """An idle reader's check that the streams were not lost under it (FLUSHALL)."""
        epochs = await client.mget([ch.keys[0] for ch in channels])
        for ch, epoch in zip(channels, epochs, strict=True):
            if epoch is None or epoch.decode() != ch.epoch:
                ch.synced = False

    # --- writing: the pipeline -> the stream ---

    async def _write(self, writer: Any) -> None:
        while True:
            if not self._outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(islice(self._outbox, WRITE_BATCH))
            runs = _runs(batch)
            epoch = _new_epoch()
            pipe = writer.pipeline(transaction=False)
            for run in runs:
                seqs = [item.seq for item in run]
                pipe.evalsha(
                    self._publish_sha,
                    4,
                    *run[0].channel.keys,
                    run[0].source,
                    epoch,
                    self._maxlen,
                    " ".join(map(str, seqs)),
                    seqs[0],
                    seqs[-1],
                    join_events([item.prepared.json(None) for item in run]),
                    join_times([item.prepared.received for item in run]),
                    run[0].ttl,
                    run[0].tag,
                )
            results = await pipe.execute()
            for _ in batch:
                self._outbox.popleft()
            for run, (stream_epoch, offset) in zip(runs, results, strict=True):
                ch, epoch = run[0].channel, stream_epoch.decode()
                if offset:  # 0: a repeat the stream already held
                    ch.written = Position(epoch, int(offset))
                if run[0].tag:
                    ch.held -= len(run)
                    self._end_outage(ch)
                if epoch != ch.epoch:
                    ch.synced = False  # the reader re-syncs on its next turn
            self._written += len(batch)
            self._progress.set()
            self._progress = asyncio.Event()
            self._metrics.broker_buffered.set(len(self._outbox))

    # --- helpers ---

    def _accept(self, item: _Outgoing) -> None:
        self._outbox.append(item)
        self._accepted += 1

    def _hold(self, item: _Outgoing) -> None:
        """A shown event kept for the stream: it goes there tagged (a run of them under its
        first event's tag), so the reader knows it when it comes back. Bounded like the outbox
        it sits in; kept until the outage epoch ends, since a retried run can come back as two
        entries under one tag."""
        item.tag = f"{self._token}:{next(self._tags)}"
        item.channel.tags.add(item.tag.encode())
        item.channel.held += 1

    def _end_outage(self, ch: _Channel) -> None:
        """The outage epoch ends once every shown event is written and the reader has passed
        the last of them; tags not read by then (trimmed, or a stream that lost its data) never
        come back, so they are forgotten (this bounds them)."""
        if ch.held or (ch.written.epoch == ch.epoch and ch.offset < ch.written.offset):
            return
        ch.local = None
        if ch.tags:
            ch.tags.clear()

    def _report_loss(self, ch: _Channel, resumed: Position) -> None:
        """Subscribers get a ``gap``: delivery goes on after ``resumed``, not after the last
        position they hold (any outage epoch ends here too)."""
        ch.local = None
        if self._lost is not None:
            self._lost(ch.name, resumed)

    def _show(self, item: _Outgoing) -> None:
        """Deliver an event locally under the channel's outage epoch (Redis is unreachable)."""
        item.shown = True
        ch = item.channel
        if ch.local is None:
            ch.local = Position(f"local-{secrets.token_hex(6)}", 0)
        ch.local = Position(ch.local.epoch, ch.local.offset + 1)
        if self._deliver is not None:
            self._deliver(Publication(ch.name, ch.local.epoch, ch.local.offset, item.prepared))

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel(
                name, self.prefix, self._token, self._history_size, self._history_bytes
            )
            self._by_stream[ch.keys[2].encode()] = ch
        return ch
