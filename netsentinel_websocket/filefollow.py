"""File ingest, the pure part: what a followed JSON-lines file holds and where reading stands.

A followed path is a sequence of *files* (one per inode and content generation): the one the
path names now, and before it any rotated-away file whose tail is still to be read. Each is a
:class:`Tracked`: its inode, a hash of its first line (inodes are reused; a truncated file gets
new first bytes), a generation (bumped when the same inode is truncated), and the offset of the
first byte not yet turned into an event. The *file id* hashes inode, generation and first line,
so it never changes while a file is followed and differs between files; an event's id is
``file:<file id>:<offset of its line>``, so reading a line again yields the same id, which the
brokers use to publish it once (:func:`file_source`). docs/opencanary.md has the whole argument.

No I/O here: reads come in as a ``read(offset, size) -> bytes`` callable and observations as
values, so every rotation and truncation case is a plain unit test. :mod:`.fileingest` is the
edge that stats, opens and reads.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

#: The first line identifies a file's content; a first line longer than this is identified by
#: its first HEAD_MAX bytes.
HEAD_MAX = 4096
#: Bytes asked of the file per read.
READ_CHUNK = 64 * 1024
FILE_ID_CHARS = 24

_FILE_EVENT_ID = re.compile(rf"(file:[0-9a-f]{{{FILE_ID_CHARS}}}):([0-9]{{1,18}})")

Read = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class Tracked:
    """One file of a followed path and how far it has been turned into events.

    ``head`` is the SHA-256 of the file's first ``head_len`` bytes ("" while the first line is
    incomplete: no event can have been made yet). ``moved`` marks content that is no longer at
    its inode (the inode was truncated: copytruncate), to be found by its head in a copy.
    ``skipping`` means ``offset`` is inside a line too long to keep, already counted.
    """

    dev: int
    ino: int
    gen: int = 0
    head: str = ""
    head_len: int = 0
    offset: int = 0
    skipping: bool = False
    moved: bool = False

    @property
    def fid(self) -> str:
        """Stable for the file's life, different for another inode, generation or content."""
        text = f"{self.dev}:{self.ino}:{self.gen}:{self.head}"
        return hashlib.sha256(text.encode()).hexdigest()[:FILE_ID_CHARS]

    def event_id(self, offset: int) -> str:
        return f"file:{self.fid}:{offset}"

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: Any) -> Tracked:
        """From persisted state; ValueError when it is not one."""
        if not isinstance(data, dict) or set(data) != set(cls.__slots__):
            raise ValueError("not a tracked file")
        types = {"head": str, "skipping": bool, "moved": bool}
        for name, value in data.items():
            if type(value) is not types.get(name, int) or (type(value) is int and value < 0):
                raise ValueError(f"bad {name}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the path names now: inode, size, and whether its first bytes are the head of the
    file being followed there (True when that head is not known yet)."""

    dev: int
    ino: int
    size: int
    same_head: bool = True


def reconcile(files: Sequence[Tracked], seen: Seen | None) -> tuple[Tracked, ...]:
    """The files to follow after looking at the path (``seen`` None: it does not exist now).

    Another inode at the path is a rotation (rename + create): the old file stays, to be
    finished first. The same inode shorter than the offset, or with other first bytes, was
    truncated (copytruncate, or rewritten; also an inode reused while the runner was down):
    the old content is looked for in a copy, and the inode is read again from 0 under a new
    generation."""
    if seen is None:
        return tuple(files)
    if not files:
        return (Tracked(seen.dev, seen.ino),)
    *older, current = files
    if (seen.dev, seen.ino) != (current.dev, current.ino):
        return (*older, current, Tracked(seen.dev, seen.ino))
    if seen.size < current.offset or not seen.same_head:
        return (*older, replace(current, moved=True), Tracked(seen.dev, seen.ino, current.gen + 1))
    return tuple(files)


def read_head(read: Read) -> bytes | None:
    """The bytes that identify a file: its first line, at most HEAD_MAX bytes; None while the
    first line is incomplete and shorter (nothing can be read from such a file yet)."""
    data = read(0, HEAD_MAX)
    end = data.find(b"\n")
    if end >= 0:
        return data[: end + 1]
    return data if len(data) == HEAD_MAX else None


def head_hash(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


def with_head(file: Tracked, head: bytes) -> Tracked:
    return replace(file, head=head_hash(head), head_len=len(head))


def has_head(file: Tracked, read: Read) -> bool:
    """Whether the bytes ``read`` gives start with ``file``'s head (or it has none yet)."""
    return not file.head or head_hash(read(0, file.head_len)) == file.head


@dataclass(frozen=True, slots=True)
class Line:
    """A complete line at ``offset``; ``data`` None when it was longer than allowed (skipped)."""

    offset: int
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Taken:
    """What one bounded read produced and where the next one starts."""

    lines: tuple[Line, ...]
    offset: int
    skipping: bool
    eof: bool  # the read reached the end of the file's bytes


def take_lines(read: Read, offset: int, skipping: bool, max_line: int, budget: int) -> Taken:
    """Complete lines from ``offset``; a partial last line is left for later (``offset`` stays
    at its start). Reading stops at the end of the data or, at a line boundary, once
    ``budget`` bytes were read; a line in progress is read on up to ``max_line`` bytes (so a
    batch is at most budget + max_line + READ_CHUNK). A line over ``max_line`` bytes (without
    its newline) yields one ``Line(offset, None)`` and is skipped to its end, in later reads
    if need be. Blank lines yield nothing."""
    lines: list[Line] = []
    pending = bytearray()  # the line in progress, from ``start``
    start = pos = offset
    eof = False
    while pending or pos - offset < budget:
        chunk = read(pos, READ_CHUNK)
        if not chunk:
            eof = True
            break
        at, chunk_start = 0, pos
        pos += len(chunk)
        while (end := chunk.find(b"\n", at)) >= 0:
            if skipping:
                skipping = False
            elif len(pending) + end - at > max_line:
                lines.append(Line(start, None))
            else:
                text = bytes(pending + chunk[at:end]) if pending else chunk[at:end]
                if text.strip():
                    lines.append(Line(start, text))
            pending.clear()
            at = end + 1
            start = chunk_start + at
        if skipping:
            start = pos
        elif len(pending) + len(chunk) - at > max_line:
            lines.append(Line(start, None))
            pending.clear()
            skipping, start = True, pos
        else:
            pending += chunk[at:]
    return Taken(tuple(lines), start, skipping, eof)


def file_source(event_id: object) -> tuple[str, int] | None:
    """For the id of a line read from a file, (its file's source name, a sequence number that
    grows with the line's offset); None for any other id. The brokers keep the highest
    sequence published per source and channel, so a line read again is not published again."""
    match = _FILE_EVENT_ID.fullmatch(event_id) if isinstance(event_id, str) else None
    if match is None:
        return None
    return match.group(1), int(match.group(2)) + 1


class Watermarks:
    """The highest sequence published per file source (:func:`file_source`), for the newest
    ``bound`` sources: the memory broker's form of the Redis broker's source keys."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._seen: OrderedDict[str, int] = OrderedDict()

    def fresh(self, event_id: object) -> bool:
        """False when ``event_id`` is a file line already published, else True (and noted)."""
        source = file_source(event_id)
        if source is None:
            return True
        name, seq = source
        if self._seen.get(name, 0) >= seq:
            return False
        self._seen[name] = seq
        self._seen.move_to_end(name)
        if len(self._seen) > self._bound:
            self._seen.popitem(last=False)
        return True


def dump_state(path: str, files: Iterable[Tracked]) -> dict[str, Any]:
    return {"version": 1, "path": path, "files": [f.as_dict() for f in files]}


def load_state(path: str, data: Any) -> tuple[Tracked, ...]:
    """The files of persisted state; ValueError when it is not state of ``path``."""
    if not isinstance(data, dict) or data.get("version") != 1 or data.get("path") != path:
        raise ValueError("not the state of this path")
    files = data.get("files")
    if not isinstance(files, list):
        raise ValueError("no files")
    return tuple(Tracked.from_dict(f) for f in files)
