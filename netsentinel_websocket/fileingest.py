"""File ingest, the I/O edge: follow JSON-lines log files on the event loop, exactly once.

Each configured path gets a :class:`FileFollower` (synchronous, bounded reads of local files)
and a task that polls it every ``websocket.ingest.poll_interval`` seconds: stat the path,
read what is new in bounded chunks, turn each complete line into an event whose id says where
it was read (:mod:`.filefollow`), hand the events to the pipeline, wait until the broker holds
them (``settle``: the Redis broker's stream, at once for the memory broker), and only then
persist the new position (write, fsync, rename) in ``websocket.ingest.state_dir``.

So a crash (even ``kill -9``) loses nothing: what was not persisted is read again. And it
repeats nothing: a line read again has the same id, and the brokers publish an id of a file
line at most once per channel (:func:`.filefollow.file_source`). Polling instead of inotify
(not in the standard library) costs at most one ``stat`` per path per interval when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .config import FileIngestSettings
from .cowrie import is_cowrie_record
from .filefollow import (
    Line,
    Read,
    Seen,
    Tracked,
    dump_state,
    has_head,
    load_state,
    read_head,
    reconcile,
    take_lines,
    with_head,
)
from .ingest import IngestError, parse_item, worth_logging
from .metrics import Metrics
from .opencanary import is_opencanary_record
from .pressure import Pressure

log = logging.getLogger("netsentinel_websocket.fileingest")

#: Bytes read per file per poll, at line boundaries (then the loop gets a turn).
BATCH_BYTES = 256 * 1024
#: Sibling names looked at when searching for a rotated file (``<name>.1``, ``<name>-2024...``).
MAX_SIBLINGS = 1000
#: How long stop() lets a follower finish its batch (a Redis outage can hold it up).
STOP_WAIT = 5.0

Publish = Callable[[dict[str, Any]], Awaitable[None]]
Settle = Callable[[], Awaitable[None]]


#: What each ``format`` accepts before the shared parsing (``ingest.parse_item``) normalizes it.
FORMATS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "auto": lambda item: True,
    "opencanary": is_opencanary_record,
    "cowrie": is_cowrie_record,
    "netsentinel": lambda item: "event_type" in item,
}


def parse_file_line(line: bytes, fmt: str) -> dict[str, Any]:
    """One line of a followed file as an event; IngestError (with its reason) otherwise."""
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise IngestError("not valid JSON (or not UTF-8)", "malformed") from None
    if isinstance(item, dict) and not FORMATS[fmt](item):
        raise IngestError(f"not a {fmt} record")
    return parse_item(item)


@dataclass(frozen=True, slots=True)
class Batch:
    """The lines one poll read (with their ids) and the files as they stand after them."""

    lines: tuple[tuple[str, Line], ...]
    files: tuple[Tracked, ...]
    more: bool  # stopped on the byte budget: poll again at once


class FileFollower:
    """One followed path: finds its files (across rotation and truncation), reads them in
    bounded chunks, and keeps the position in a state file. Not thread-safe; blocking, but
    only for small reads of a local file."""

    def __init__(self, path: str, state_dir: str, max_line: int) -> None:
        self.path = path
        name = hashlib.sha256(path.encode()).hexdigest()[:16]
        self.state_path = os.path.join(state_dir, f"file-{name}.json")
        self._max_line = max_line
        self._fds: dict[tuple[int, int], int] = {}  # open files by (dev, ino)
        self._seen: tuple[int, int, int, int] | None = None  # dev, ino, size, mtime at last poll
        self._quiet: tuple[Any, ...] | None = None  # (stat, files) of a poll that read it all
        self.files = self._load()

    # --- state ---

    def _load(self) -> tuple[Tracked, ...]:
        try:
            with open(self.state_path, "rb") as fh:
                return load_state(self.path, orjson.loads(fh.read()))
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:  # orjson's error is a ValueError
            log.warning(
                "file ingest %s: state %s unusable (%s); reading the file from its start",
                self.path,
                self.state_path,
                exc,
            )
            return ()

    def commit(self, batch: Batch) -> None:
        """Adopt and persist the position after ``batch`` (its events are in the broker):
        temp file, fsync, rename, fsync of the directory."""
        if batch.files != self.files:
            tmp = self.state_path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(orjson.dumps(dump_state(self.path, batch.files)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
            _fsync_dir(os.path.dirname(self.state_path))
            self.files = batch.files
        keep = {(f.dev, f.ino) for f in self.files if not f.moved}
        for key in set(self._fds) - keep:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # --- reading ---

    def poll(self) -> Batch:
        """Look at the path and read what is new, oldest file first (file order)."""
        st = _stat(self.path)
        now = None if st is None else (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if len(self.files) <= 1 and self._quiet == (now, self.files):
            return Batch((), self.files, False)
        seen = None
        if st is not None:
            same_head = True
            current = self.files[-1] if self.files else None
            changed = now != self._seen  # the head changes only with the size or the mtime
            if current and changed and (current.dev, current.ino) == (st.st_dev, st.st_ino):
                reader = self._open(self.path, st.st_dev, st.st_ino)
                if reader is None:  # replaced since the stat: look again next time
                    return Batch((), self.files, False)
                same_head = has_head(current, reader)
            seen = Seen(st.st_dev, st.st_ino, st.st_size, same_head)
        self._seen = now
        files = reconcile(self.files, seen)
        lines: list[tuple[str, Line]] = []
        kept: tuple[Tracked, ...] = ()
        more = False
        for i, file in enumerate(files):
            last = i == len(files) - 1
            reader = self._locate(file, seen if last else None, files[-1])
            if reader is None:
                if last:
                    kept = (file,)
                    break
                log.warning(
                    "file ingest %s: a rotated file is gone before it was read to its end "
                    "(from byte %d); lines after that are lost",
                    self.path,
                    file.offset,
                )
                continue
            file, taken, eof = self._read(file, reader)
            lines += [(file.event_id(line.offset), line) for line in taken]
            writer_moved_on = seen is not None and seen.size > 0
            if not last and eof and writer_moved_on:
                continue  # finished: the writer writes the newer file now
            kept, more = (file, *files[i + 1 :]), not eof
            break
        if not more:
            self._quiet = (now, kept)
        return Batch(tuple(lines), kept, more)

    def _read(self, file: Tracked, reader: Read) -> tuple[Tracked, tuple[Line, ...], bool]:
        if not file.head:
            head = read_head(reader)
            if head is None:
                return file, (), True
            file = with_head(file, head)
        taken = take_lines(reader, file.offset, file.skipping, self._max_line, BATCH_BYTES)
        return replace(file, offset=taken.offset, skipping=taken.skipping), taken.lines, taken.eof

    def _locate(self, file: Tracked, seen: Seen | None, current: Tracked) -> Read | None:
        """A reader of ``file``'s bytes: the path when it is that file, an inode still open, or
        a sibling that is it (renamed) or holds its content (copied); None when it is gone."""
        if seen is not None and (seen.dev, seen.ino) == (file.dev, file.ino) and not file.moved:
            return self._open(self.path, file.dev, file.ino)
        if not file.moved and (file.dev, file.ino) in self._fds:
            return _reader(self._fds[(file.dev, file.ino)])
        for path in self._siblings():
            st = _stat(path)
            if st is None or st.st_size < file.offset or not file.head:
                continue
            if file.moved:
                found = (st.st_dev, st.st_ino) != (current.dev, current.ino)
            else:
                found = (st.st_dev, st.st_ino) == (file.dev, file.ino)
            with contextlib.suppress(OSError):
                reader = self._open(path, st.st_dev, st.st_ino) if found else None
                if reader is not None and has_head(file, reader):
                    return reader
        return None

    def _siblings(self) -> Iterator[str]:
        """Files next to the path whose name starts with its name (rotation's names)."""
        folder, name = os.path.split(self.path)
        with contextlib.suppress(OSError), os.scandir(folder or ".") as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_SIBLINGS:
                    break
                if entry.name.startswith(name) and entry.name != name:
                    yield entry.path

    def _open(self, path: str, dev: int, ino: int) -> Read | None:
        """A reader of the inode (dev, ino), opened at ``path`` unless already open; None when
        ``path`` no longer names it (OSError when it cannot be opened)."""
        fd = self._fds.get((dev, ino))
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):  # replaced since the stat
                os.close(fd)
                return None
            self._fds[(dev, ino)] = fd
        return _reader(fd)


def _reader(fd: int) -> Read:
    return lambda offset, size: os.pread(fd, size, offset)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileIngest:
    """The runner's file followers: one task per path, started and stopped with the runner."""

    def __init__(
        self,
        settings: FileIngestSettings,
        publish: Publish,
        settle: Settle,
        metrics: Metrics,
        pressure: Pressure | None = None,
    ) -> None:
        """``pressure``: the node's backpressure, waited on before reading on after a heavy
        batch (:mod:`.pressure`)."""
        self._settings = settings
        self._pressure = pressure
        self._publish = publish
        self._settle = settle
        self._metrics = metrics
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        os.makedirs(self._settings.state_dir, mode=0o700, exist_ok=True)
        for source in self._settings.files:
            follower = FileFollower(
                source.path, self._settings.state_dir, self._settings.max_line_bytes
            )
            self._tasks.append(asyncio.create_task(self._follow(follower, source.format)))

    async def stop(self) -> None:
        """Let each follower finish and persist its batch, then end (cancel after STOP_WAIT)."""
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_WAIT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _follow(self, follower: FileFollower, fmt: str) -> None:
        log.info("following %s (format %s)", follower.path, fmt)
        errors = 0
        try:
            while not self._stop.is_set():
                more = False
                try:
                    batch = follower.poll()
                    await self._hand_over(follower.path, batch, fmt)
                    if batch.files != follower.files:
                        await self._settle()
                        follower.commit(batch)
                    more, errors = batch.more, 0
                except Exception as exc:  # e.g. unreadable file or state dir: never stop
                    errors += 1
                    if worth_logging(errors):
                        log.warning(
                            "file ingest %s: %s: %s; retrying",
                            follower.path,
                            type(exc).__name__,
                            exc,
                        )
                if more:
                    await asyncio.sleep(0)
                    if self._pressure is not None:  # more to read: that batch was a full one
                        await self._pressure.hold(BATCH_BYTES)
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._settings.poll_interval)
        finally:
            follower.close()

    async def _hand_over(self, path: str, batch: Batch, fmt: str) -> None:
        """Parse and publish a batch's lines in order; bad ones are counted and logged by
        offset, never by content."""
        for event_id, line in batch.lines:
            try:
                if line.data is None:
                    raise IngestError(f"line longer than {self._settings.max_line_bytes} bytes")
                event = parse_file_line(line.data, fmt)
            except IngestError as exc:
                reason = "too_long" if line.data is None else exc.reason
                self._metrics.ingest_rejected.labels(reason).inc()
                log.warning(
                    "file ingest %s: line at byte %d dropped (%s: %s)",
                    path,
                    line.offset,
                    reason,
                    exc,
                )
                continue
            event["id"] = event_id
            await self._publish(event)
            self._metrics.ingest_file_lines.inc()
