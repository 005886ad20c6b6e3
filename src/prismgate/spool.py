"""The spend log's spool: rows wait on local disk while the database does not answer.

A spool is a folder (in the gateway's data folder) of append-only files, one row per line
(msgspec JSON). Each process writes only its own file, `spool-<pid>-<random>.jsonl`, and
holds an exclusive `flock` on it while it lives; a batch is appended with one write and
made durable with `fsync` before the rows leave memory.

Rows are read back in the order they were written, a batch at a time (`peek`), and
forgotten only once the database has them (`take`): a file is truncated, or removed, only
after every row in it was written. A crash between a write and a `take` sends those rows
again, and the spend log skips request ids it already has.

A starting process `adopt`s the files of processes that ended (their lock is free): it
takes the lock, so no two processes replay one file, and removes the file once replayed.
It adopts their journals too (`journal-<pid>-<random>.msgpack`, `SpendJournal`): the rows
a killed process still held in memory. A journal holds frames, not lines: each row's
fields as one MessagePack array (JSON for a row MessagePack cannot hold: an integer past
64 bits in its metadata), after its length (4 bytes, little-endian) and before a newline.
Journals of earlier releases (`journal-*.jsonl`, lines) are adopted as spool files are.
The spool holds at most `max_bytes`; rows past the bound are dropped and counted in the
log, never silently.

Every method does blocking file I/O: call it from a worker thread (`asyncio.to_thread`).
A thread lock keeps the methods one at a time.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from prismgate.storage.records import SpendRow

__all__ = ["DEFAULT_MAX_BYTES", "SpendJournal", "SpendSpool", "SpoolBatch"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 << 20  # 256 MiB, hundreds of thousands of rows
# The spool's own files, and the journals of processes (replayed alike once they end;
# `.jsonl`: lines of JSON, `.msgpack`: frames).
_PATTERNS = ("spool-*.jsonl", "journal-*.msgpack", "journal-*.jsonl")
_FRAMES = ".msgpack"
_READ_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(1 << 16))  # what an emptied journal is written over with

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SpendRow).decode


class _RowFields(SpendRow, frozen=True, array_like=True):
    """A spend row read from a journal frame: its fields in order (`msgspec.structs.astuple`).

    Frames are positional: a change to `SpendRow` that moves its fields must give
    journals a new suffix, so that one left by a crash before an upgrade is not misread
    (fields added last are read as their defaults)."""


_fields = msgspec.structs.astuple
_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder(_RowFields).decode
_FRAME_HEAD = 4  # bytes of a frame's length


@dataclass(slots=True)
class _File:
    """One spool file this process holds the lock of."""

    path: Path
    fd: int
    size: int  # bytes in the file
    offset: int = 0  # bytes before this are written to the database
    own: bool = False  # this process appends to it (else: adopted, replay only)


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """Rows read from the spool, not yet forgotten: pass to `take` once written."""

    rows: list[SpendRow]
    file: _File
    end: int  # the offset just after these rows


class SpendSpool:
    """Spend rows on local disk, bounded, replayed in order (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes < 1:
            raise ValueError("the spool's max_bytes must be at least 1")
        self.folder = Path(folder).expanduser()
        self._max_bytes = max_bytes
        self._files: list[_File] = []  # adopted files first, then this process's own
        self._own: _File | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._waiting = 0
        self.dropped = 0  # rows dropped because the spool was full, in all

    @property
    def waiting(self) -> int:
        """Bytes of rows on disk not yet written to the database (no I/O: a count kept
        by the methods, safe to read from the event loop)."""
        return self._waiting

    def adopt(self) -> int:
        """Take over the spool files of processes that ended; how many were taken.

        A file whose lock is held belongs to a live process (or to another process that
        is adopting it) and is left alone."""
        with self._lock:
            if self._closed:
                return 0
            self.folder.mkdir(parents=True, exist_ok=True)
            held = {file.path for file in self._files}
            adopted: list[_File] = []
            found = [path for pattern in _PATTERNS for path in self.folder.glob(pattern)]
            for path in sorted(found, key=_modified):
                file = None if path in held else _lock(path)
                if file is not None:
                    adopted.append(file)
                    log.warning(
                        "spend log: replaying %d bytes of rows spooled by a process that "
                        "ended (%s)",
                        file.size,
                        path.name,
                    )
            # Older rows first: adopted files go before this process's own.
            self._files[:0] = adopted
            for pattern in _PATTERNS:
                for making in self.folder.glob(f".{pattern}.new"):
                    _remove_if_abandoned(making)
            self._recount()
            return len(adopted)

    def append(self, rows: Sequence[SpendRow]) -> int:
        """Add rows at the end, durably (fsync); how many were dropped for want of room."""
        with self._lock:
            if not rows:
                return 0
            if self._closed:
                raise RuntimeError("the spend spool is closed")
            room = self._max_bytes - self._waiting
            lines = []
            for row in rows:
                line = _encode(row) + b"\n"
                if len(line) > room:
                    break
                room -= len(line)
                lines.append(line)
            dropped = len(rows) - len(lines)
            if lines:
                own = self._own or self._create()
                data = b"".join(lines)
                try:
                    _write_all(own.fd, data)
                    os.fsync(own.fd)
                except OSError:
                    os.ftruncate(own.fd, own.size)  # no part line left for the reader
                    raise
                own.size += len(data)
                self._recount()
            if dropped:
                self.dropped += dropped
                log.error(
                    "spend log: the spool in %s is full (%d bytes); %d rows dropped (%d in all)",
                    self.folder,
                    self._max_bytes,
                    dropped,
                    self.dropped,
                )
            return dropped

    def peek(self, limit: int) -> SpoolBatch | None:
        """The oldest rows waiting (at most `limit`, from one file); None when none wait.
        They stay in the spool until `take`."""
        with self._lock:
            while not self._closed:
                file = next((f for f in self._files if f.offset < f.size), None)
                if file is None:
                    return None
                rows, end = _read(file, limit)
                if rows:
                    return SpoolBatch(rows, file, end)
                # Only unreadable lines were left in this file: it is done with.
                file.offset = end
                self._finish(file)
            return None

    def take(self, batch: SpoolBatch) -> None:
        """Forget `batch`: its rows are in the database. A file whose rows are all written
        is truncated (this process's own) or removed (an adopted one)."""
        with self._lock:
            file = batch.file
            if self._closed or file not in self._files:
                return
            file.offset = max(file.offset, batch.end)
            self._finish(file)

    def close(self) -> None:
        """Release the files: an empty own file is removed, any other is left for the next
        process to adopt."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for file in self._files:
                if file.own and file.offset >= file.size:
                    file.path.unlink(missing_ok=True)
                os.close(file.fd)  # releases the lock
            left = self._waiting
            self._files.clear()
            self._waiting = 0
            self._own = None
            if left:
                log.warning(
                    "spend log: %d bytes of rows stay in the spool in %s for the next start",
                    left,
                    self.folder,
                )

    def _create(self) -> _File:
        self._own = _create_locked(self.folder, "spool")
        self._files.append(self._own)
        return self._own

    def _recount(self) -> None:
        self._waiting = sum(file.size - file.offset for file in self._files)

    def _finish(self, file: _File) -> None:
        self._recount()
        if file.offset < file.size:
            return
        if file.own:
            # Appends (O_APPEND) go on at the new end, 0.
            os.ftruncate(file.fd, 0)
            file.size = file.offset = 0
            return
        file.path.unlink(missing_ok=True)  # before the lock goes: no one replays it again
        os.close(file.fd)
        self._files.remove(file)


class SpendJournal:
    """Each row the recorder queues, written ahead to local disk: a process killed with
    rows still in memory (SIGKILL, the OOM killer) leaves them in its journal, which the
    next start adopts and replays like a spool file (same folder, same names and locks;
    the spend log skips the rows it already has).

    A row is copied, as a frame (the module's docstring), into a shared memory map of the
    journal file: no system call a row
    (a write each cost a system call and a hand-over of the GIL, on the request path).
    The kernel owns the mapped pages, so they outlive a killed process; nothing is
    fsync'd (a power cut may lose the last rows; the spool itself is fsync'd). A file is
    mapped `MAP_BYTES` at a time, zero-filled past its last row (readers stop at the
    zeros), and grows when full.

    The recorder `seal`s the journal when it writes a batch and `forget`s the sealed
    files once their rows are in the database or the spool. A forgotten file is emptied
    and kept for reuse, so that under load the journal works in a pair of files, made
    once, with no file made or removed a batch.

    `write` and `seal` run on the event loop; `prepare`, `forget` and `close` do
    file-system work: call them from a worker thread.
    """

    MAP_BYTES = 1 << 20  # a new file's mapped size: a few thousand rows
    SPARE_FILES = 2  # emptied files kept for reuse; more are removed

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()
        self._current: _Mapped | None = None
        self._spare: list[_Mapped] = []  # emptied, ready to be written
        self._failed = False

    def prepare(self) -> None:
        """Have a file ready, so that `seal` and the first `write` after it do no
        file-system work."""
        if not self._spare:
            file = _create_locked(self.folder, "journal", _FRAMES)
            try:
                self._spare.append(_Mapped(file, self.MAP_BYTES))
            except BaseException:  # no room for it (a full disk): no file left behind
                file.path.unlink(missing_ok=True)
                os.close(file.fd)
                raise

    def write(self, row: SpendRow) -> None:
        """Write `row` ahead (a disk that fails is logged once; the row stays queued)."""
        file = self._current
        if file is None:
            if not self._spare:
                return  # no file made yet (`prepare`): the recorder prepares one soon
            file = self._current = self._spare.pop()
        try:
            file.append(_frame(row))
        except (OSError, ValueError) as exc:  # ValueError: a mapping that cannot grow
            if not self._failed:
                self._failed = True
                log.error("spend log: the journal in %s cannot be written (%s)", self.folder, exc)

    def seal(self) -> list[_Mapped]:
        """End the current file: the rows queued so far are in the files returned."""
        sealed, self._current = self._current, None
        return [] if sealed is None else [sealed]

    def forget(self, sealed: Sequence[_Mapped]) -> None:
        """Empty sealed files (their rows are in the database or the spool) for reuse;
        remove those past `SPARE_FILES`."""
        for file in sealed:
            if len(self._spare) < self.SPARE_FILES:
                file.empty()
                self._spare.append(file)
            else:
                file.remove()

    def close(self, *, keep: bool = False) -> None:
        """Remove the files left (the recorder wrote or spooled every row), or, with
        `keep`, leave them for the next start to replay (rows that could go nowhere)."""
        files = [*self._spare, *([] if self._current is None else [self._current])]
        self._current = None
        self._spare = []
        for file in files:
            if keep and file.used:
                file.release()  # the lock goes: the next start adopts the file
            else:
                file.remove()


class _Mapped:
    """A journal file of this process's, locked, and mapped shared: rows from offset 0,
    zeros after them."""

    __slots__ = ("file", "map", "used")

    def __init__(self, file: _File, size: int) -> None:
        self.file = file
        # Zeros (the part a reader ignores) on blocks taken now: a full disk fails here,
        # as an OSError, and not as a SIGBUS when a row is copied into a sparse mapping.
        os.posix_fallocate(file.fd, 0, size)
        self.map = mmap.mmap(file.fd, size)
        self.used = 0

    def append(self, data: bytes) -> None:
        end = self.used + len(data)
        if end > len(self.map):
            size = max(2 * len(self.map), end)
            os.posix_fallocate(self.file.fd, 0, size)  # the blocks first, as above
            self.map.resize(size)
        self.map[self.used : end] = data
        self.used = end

    def empty(self) -> None:
        """Drop the rows: zeros written over them in place, from the last row back (a
        process killed meanwhile leaves rows already written, skipped when replayed, then
        zeros). Cutting the file instead cost ~1 ms a batch, and a page fault every few
        rows after it."""
        end = self.used
        while end > 0:
            start = max(0, end - len(_ZEROS))
            self.map[start:end] = _ZEROS[: end - start]
            end = start
        self.used = 0

    def release(self) -> None:
        """Unmap and close the file (its lock goes with the last descriptor)."""
        self.map.close()
        os.close(self.file.fd)

    def remove(self) -> None:
        self.file.path.unlink(missing_ok=True)  # before the lock goes: no one replays it
        self.release()


def _create_locked(folder: Path, kind: str, suffix: str = ".jsonl") -> _File:
    """A new, empty file of this process's (`kind`: spool or journal), locked."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    # Made and locked under another name, then renamed: a starting process never sees
    # it unlocked (it would take an empty, unlocked file for an ended process's).
    making = folder / f".{name}.new"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(making, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(making, folder / name)
        _sync_folder(folder)  # the file's name survives a power cut too
    except OSError:
        os.close(fd)
        making.unlink(missing_ok=True)
        raise
    return _File(folder / name, fd, size=0, own=True)


def _lock(path: Path) -> _File | None:
    """`path`, locked by this process; None when another process holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another process may have replayed and removed the file since it was listed.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
        size = _content_size(fd, os.fstat(fd).st_size)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    if size == 0:
        path.unlink(missing_ok=True)
        os.close(fd)
        return None
    return _File(path, fd, size=size)


def _frame(row: SpendRow) -> bytes:
    """`row` as a journal frame. MessagePack, not JSON: half the CPU on the request path
    (≈ 270 ns against 560 a row), and under half the bytes."""
    try:
        payload = _pack(_fields(row))
    except OverflowError:  # an integer past 64 bits, in the metadata or the details
        payload = _encode(row)
    return len(payload).to_bytes(_FRAME_HEAD, "little") + payload + b"\n"


def _read(file: _File, limit: int) -> tuple[list[SpendRow], int]:
    """Up to `limit` rows from `file` at its offset, and the offset after them."""
    if file.path.suffix == _FRAMES:
        return _read_frames(file, limit)
    rows: list[SpendRow] = []
    offset = file.offset
    chunk = _READ_CHUNK
    bad = 0
    while len(rows) < limit and offset < file.size:
        data = os.pread(file.fd, min(chunk, file.size - offset), offset)
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: a part line, or b""
        if not lines:
            if offset + len(data) < file.size:
                chunk *= 2  # one line longer than the chunk: read more
                continue
            # A last line with no newline: a write cut short by a crash.
            log.warning(
                "spend log: a spool file ends in a part row (%d bytes), skipped: %s",
                len(tail),
                file.path.name,
            )
            offset = file.size
            break
        for line in lines:
            if len(rows) == limit:
                break
            offset += len(line) + 1
            try:
                rows.append(_decode(line))
            except msgspec.DecodeError:
                bad += 1
    if bad:
        log.error("spend log: %d unreadable rows skipped in %s", bad, file.path.name)
    return rows, offset


def _read_frames(file: _File, limit: int) -> tuple[list[SpendRow], int]:
    """`_read`, for a journal of frames."""
    rows: list[SpendRow] = []
    offset = file.offset
    data, at = b"", 0  # bytes read from `offset - at` on
    bad = 0
    while len(rows) < limit and offset < file.size:
        size = _frame_size(data, at)
        if size is None or at + _FRAME_HEAD + size + 1 > len(data):  # read on from here
            wanted = max(_READ_CHUNK, _FRAME_HEAD + (size or 0) + 1)
            data, at = os.pread(file.fd, min(wanted, file.size - offset), offset), 0
            size = _frame_size(data, at)
        end = at + _FRAME_HEAD + (size or 0) + 1
        if size is None or end > len(data) or data[end - 1] != 0x0A:
            # A frame cut short by a crash (or zeros where it was being emptied).
            log.warning(
                "spend log: a journal ends in a part row (%d bytes), skipped: %s",
                file.size - offset,
                file.path.name,
            )
            offset = file.size
            break
        payload = data[at + _FRAME_HEAD : end - 1]
        try:
            if payload[:1] == b"{":  # a row MessagePack could not hold
                rows.append(_decode(payload))
            else:
                rows.append(SpendRow(*_fields(_unpack(payload))))
        except msgspec.DecodeError:
            bad += 1
        offset += end - at
        at = end
    if bad:
        log.error("spend log: %d unreadable rows skipped in %s", bad, file.path.name)
    return rows, offset


def _frame_size(data: bytes, at: int) -> int | None:
    """The length of the frame at `at` in `data`; None when `data` ends within its head."""
    head = data[at : at + _FRAME_HEAD]
    return int.from_bytes(head, "little") if len(head) == _FRAME_HEAD else None


def _content_size(fd: int, size: int) -> int:
    """The bytes of `fd` before the zeros that end it (a journal's unused mapping)."""
    while size > 0:
        start = max(0, size - _READ_CHUNK)
        written = os.pread(fd, size - start, start).rstrip(b"\0")
        if written:
            return start + len(written)
        size = start
    return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


ABANDONED_AFTER = 60.0  # seconds: a half-made spool file older than this was abandoned


def _remove_if_abandoned(path: Path) -> None:
    """Remove a spool file left half-made (its maker died between making and naming it:
    it holds no rows). One being made now is locked by its maker, or too new to judge
    (made, not locked yet), and is left alone."""
    try:
        if time.time() - path.stat().st_mtime < ABANDONED_AFTER:
            return
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
