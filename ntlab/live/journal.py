"""Append-only, crash-safe journal of the live engine: fixed-size records in memory-mapped files.

The engine appends every order intent and venue event with :func:`append_nb` from its compiled
code before the event takes effect; a restart reads it with :func:`read_journal` or continues it
with :meth:`Journal.open`. One writer at a time (the engine thread); the flusher thread only fsyncs.
An open :class:`Journal` holds an exclusive ``flock`` on its folder (the kernel drops it when the
process dies, SIGKILL included): a second writer, in this process or another, is refused.

Record (format version 1): 20 little-endian 8-byte words = 160 bytes. Word 0 :data:`RECORD_MAGIC`
(``b"NTJREC"`` + the version as uint16), 1 kind (int64), 2 seq (int64; 1, 2, 3... +1 across the
journal), 3-18 sixteen float64 payload words (unused 0.0), 19 checksum (uint64) of words 0-18,
written last and never 0 (0 maps to 1), so a slot never written (all zeros) or cut short by a
crash does not check. The checksum folds each word into one of four lanes with two rounds of a
32-bit Feistel mix, then mixes the lanes; every step is a bijection, so changing any one word
(any one-bit flip) changes it (bar a 2**-64 chance from the 0 -> 1 map). Its products are
32 x 32-bit: nothing overflows, so it runs as is (no NumPy warnings) under NUMBA_DISABLE_JIT.

Segment ``<dir>/journal.NNNNNN`` (000000, 000001...): ``capacity + 1`` rows of 160 bytes,
preallocated with zeros. Row 0 is the header: word 0 :data:`HEADER_MAGIC` (``b"NTJHDR"`` +
version), 1 version, 2 record bytes, 3 capacity, 4 segment index, 5 seq of its first record, 6
checksum of words 0-5, 7 last seq known on disk (rewritten after each fsync, not checksummed).
Slot ``s`` is row ``s + 1``, at byte offset ``160 * (s + 1)``. A segment is written as ``*.tmp``
and renamed once its header is on disk.

Durability: a record is written with plain stores into a MAP_SHARED mapping of the segment
file, so it is in the kernel page cache the moment the store completes and survives a SIGKILL
or crash of the process with no fsync. A power cut or kernel crash keeps only what was flushed:
the records up to :attr:`Journal.durable_seq`. A group-commit flusher (daemon thread) fsyncs the
segment every ``flush_interval`` seconds; :meth:`Journal.sync` blocks until everything appended
so far is on disk. (On Linux msync(MS_SYNC) of a shared file mapping is an fsync of the range,
and CPython's ``mmap.flush()`` holds the GIL while it waits where ``os.fsync`` releases it, so
the flusher calls ``os.fsync`` there, ``mmap.flush()`` + ``os.fsync`` elsewhere.)

Reading: a bad LAST written slot is a torn tail, discarded and reported. So is everything from
the first bad slot on, when that slot lies past the header's on-disk seq (a power cut may write
unflushed pages back in any order). Any other bad slot followed by written ones, a seq that is
not +1, or a bad header is :class:`JournalCorruptError`.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import mmap
import os
import re
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
from numba import njit

from ntlab._fs import fsync
from ntlab.exceptions import ConfigError, DataError, NtlabError
from ntlab.kernels._common import _KW

__all__ = ["BAD_PAYLOAD", "CLOSED", "FULL", "HEADER_MAGIC", "PAYLOAD_WORDS", "RECORD_BYTES", "RECORD_MAGIC",
           "STALE", "STATE_SIZE", "VERSION", "WORDS", "Journal", "JournalCorruptError", "JournalError",
           "JournalScan", "TornRecord", "append_nb", "read_journal"]

VERSION, WORDS, PAYLOAD_WORDS, STATE_SIZE = 1, 20, 16, 8
RECORD_BYTES = 8 * WORDS
RECORD_MAGIC = int.from_bytes(b"NTJREC" + VERSION.to_bytes(2, "little"), "little")
HEADER_MAGIC = int.from_bytes(b"NTJHDR" + VERSION.to_bytes(2, "little"), "little")
FULL, BAD_PAYLOAD, CLOSED, STALE = -1, -2, -3, -4  # append_nb's status codes (a seq is >= 1)
_ST_SLOT, _ST_SEQ, _ST_SEGMENT, _ST_OPEN = 0, 1, 2, 3  # state: next slot, next seq, segment, open
_H_CAPACITY, _H_SEGMENT, _H_FIRST, _H_CHECK, _H_FLUSHED = 3, 4, 5, 6, 7  # header words
_EMPTY, _VALID, _BAD_MAGIC, _BAD_CHECKSUM = 0, 1, 2, 3
_WHY = {_EMPTY: "empty slot", _BAD_MAGIC: "bad magic", _BAD_CHECKSUM: "checksum mismatch"}
_NAME = re.compile(r"journal\.(\d{6})")
_M32, _S32, _ONE, _MAGIC_U = np.uint64(0xFFFFFFFF), np.uint64(32), np.uint64(1), np.uint64(RECORD_MAGIC)
_K1, _K2 = np.uint64(0x9E3779B1), np.uint64(0x85EBCA77)
_SEEDS = tuple(np.uint64(s) for s in (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89))


class JournalError(NtlabError, RuntimeError):
    """A journal used the wrong way (closed, missing, already there)."""


class JournalCorruptError(DataError):
    """A journal whose files break the format: bad header, a bad record before good ones, a seq gap."""


@njit(**_KW)
def _mix_nb(x: np.uint64, k: np.uint64) -> np.uint64:
    """One Feistel round on the 32-bit halves of ``x`` (a bijection; no product overflows)."""
    lo = x & _M32
    p = lo * k
    return (lo << _S32) | ((x >> _S32) ^ ((p ^ (p >> _S32)) & _M32))


@njit(**_KW)
def _fold_nb(h: np.uint64, w: np.uint64) -> np.uint64:
    """Fold word ``w`` into lane ``h``: a bijection of ``h ^ w``, so of ``w`` and of ``h``."""
    return _mix_nb(_mix_nb(h ^ w, _K1), _K2)


@njit(**_KW, inline="always")  # inlined in Numba's IR: a call taking an array costs ~40 ns here
def _checksum_nb(u: np.ndarray, r: int, m: int) -> np.uint64:
    """Checksum of the words ``u[r, :m]`` (int64 or uint64; see the module docstring); never 0."""
    a, b, c, d = _SEEDS
    n4 = m - m % 4
    for i in range(0, n4, 4):  # four independent lanes: ILP instead of one serial chain
        a, b = _fold_nb(a, np.uint64(u[r, i])), _fold_nb(b, np.uint64(u[r, i + 1]))
        c, d = _fold_nb(c, np.uint64(u[r, i + 2])), _fold_nb(d, np.uint64(u[r, i + 3]))
    if n4 < m:
        a = _fold_nb(a, np.uint64(u[r, n4]))
    if n4 + 1 < m:
        b = _fold_nb(b, np.uint64(u[r, n4 + 1]))
    if n4 + 2 < m:
        c = _fold_nb(c, np.uint64(u[r, n4 + 2]))
    h = _fold_nb(_fold_nb(a, _fold_nb(b, _ONE)) ^ _fold_nb(_fold_nb(c, _fold_nb(d, _ONE)), _ONE), _ONE)
    return h if h != 0 else _ONE


@njit(**_KW)
def append_nb(words: np.ndarray, fwords: np.ndarray, state: np.ndarray, kind: int, payload: np.ndarray) -> int:
    """Append one record to the mapped segment and return its seq, or a negative status.

    ``words``/``fwords`` are the segment as ``int64[capacity + 1, 20]`` and its float64 view (row
    0 the header), ``state`` is ``int64[STATE_SIZE]``: all three from :meth:`Journal.arrays`.
    ``payload`` holds at most 16 float64 (a row ``rows[i]`` of a 2-D array passes without a copy).
    Statuses, with nothing written: :data:`FULL` (roll over with :meth:`Journal.roll`, take the
    arrays again, retry), :data:`BAD_PAYLOAD` (over 16 values), :data:`CLOSED` (journal closed),
    :data:`STALE` (``words`` is a segment rolled away from: take the arrays again).
    """
    # One exit and a loop of 0 or 1 trips instead of an ``if`` around the stores: so Numba prunes all
    # reference counting and LLVM inlines this into the caller's loop (~30 ns instead of ~80).
    n, row, seq = payload.shape[0], state[_ST_SLOT] + 1, state[_ST_SEQ]
    status = seq
    if row >= words.shape[0]:
        status = FULL
    if n > PAYLOAD_WORDS:
        status = BAD_PAYLOAD
    if words[0, _H_SEGMENT] != state[_ST_SEGMENT]:
        status = STALE
    if state[_ST_OPEN] == 0:
        status = CLOSED
    ok = 1 if status == seq else 0
    for _ in range(ok):
        words[row, 0] = RECORD_MAGIC
        words[row, 1] = kind
        words[row, 2] = seq
        for i in range(n):
            fwords[row, 3 + i] = payload[i]
        for i in range(n, PAYLOAD_WORDS):
            fwords[row, 3 + i] = 0.0
        words[row, WORDS - 1] = np.int64(_checksum_nb(words, row, WORDS - 1))  # last: a cut record fails it
    state[_ST_SLOT] = row - 1 + ok
    state[_ST_SEQ] = seq + ok
    return status


@njit(**_KW)
def _nonzero_nb(r: np.ndarray) -> bool:
    for j in range(r.shape[0]):
        if r[j] != 0:
            return True
    return False


@njit(**_KW)
def _status_nb(u: np.ndarray) -> np.ndarray:
    """Status of each record row of ``u`` (uint64[capacity, 20]) up to the last written one."""
    n = u.shape[0]
    while n > 0 and not _nonzero_nb(u[n - 1]):
        n -= 1
    status = np.empty(n, np.int8)
    for i in range(n):
        if u[i, 0] != _MAGIC_U:
            status[i] = _BAD_MAGIC if _nonzero_nb(u[i]) else _EMPTY
        else:
            status[i] = _VALID if _checksum_nb(u, i, WORDS - 1) == u[i, WORDS - 1] else _BAD_CHECKSUM
    return status


@dataclass(frozen=True)
class TornRecord:
    """Where a discarded torn tail starts (``discarded`` written slots from ``slot`` on) and why."""

    segment: Path
    slot: int
    offset: int
    reason: str
    discarded: int = 1

    def __str__(self) -> str:
        return f"{self.segment.name}, slot {self.slot} (byte offset {self.offset}): {self.reason}"


@dataclass(frozen=True, repr=False)
class JournalScan:
    """The good records of a journal in order (kinds, seqs, payload[n, 16]) and what the scan found."""

    kinds: np.ndarray
    seqs: np.ndarray
    payload: np.ndarray
    segments: tuple[Path, ...]
    torn: TornRecord | None

    @property
    def n_records(self) -> int:
        """Number of good records."""
        return int(self.seqs.shape[0])

    def __repr__(self) -> str:
        torn = f"torn at {self.torn}" if self.torn else "no torn tail"
        return f"JournalScan({self.n_records} records in {len(self.segments)} segment(s), {torn})"


def _create_segment(directory: Path, index: int, capacity: int, first_seq: int) -> Path:
    """Create a zero-filled, preallocated segment (``*.tmp``, fsync, rename) and return its path."""
    header = np.zeros(WORDS, np.uint64)
    header[:6] = (HEADER_MAGIC, VERSION, RECORD_BYTES, capacity, index, first_seq)
    header[_H_CHECK], header[_H_FLUSHED] = _checksum_nb(header.reshape(1, WORDS), 0, 6), first_seq - 1
    path = directory / f"journal.{index:06d}"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:  # real blocks now: a full disk fails here, not as a SIGBUS on a mapped store later
            os.posix_fallocate(fd, 0, (capacity + 1) * RECORD_BYTES)
        except OSError as exc:  # pragma: no cover - file systems without fallocate
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(fd, (capacity + 1) * RECORD_BYTES)
        os.pwrite(fd, header.tobytes(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync(directory, strict=False)
    return path


def _segment_paths(directory: Path) -> list[Path]:
    found = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.fullmatch(p.name)))
    for (i, p), (j, q) in itertools.pairwise(found):
        if j != i + 1:
            raise JournalCorruptError(f"segments {p.name} and {q.name} in {directory} are not consecutive: "
                                      f"journal.{i + 1:06d} is missing; restore it from a copy")
    return [p for _, p in found]


def _read_segment(path: Path, is_last: bool) -> tuple[np.ndarray, np.ndarray, TornRecord | None]:
    """Header, good record rows (uint64[n, 20]) and torn tail (or None) of one segment file."""
    nbytes = path.stat().st_size
    if nbytes < 2 * RECORD_BYTES or nbytes % RECORD_BYTES:
        raise JournalCorruptError(f"{path}: {nbytes} bytes is not a header plus whole {RECORD_BYTES}-byte "
                                  f"records; it is not a version-{VERSION} journal segment")
    u = np.memmap(path, dtype="<u8", mode="r").reshape(-1, WORDS)
    h, m = u[0], _NAME.fullmatch(path.name)
    want = {"magic": (0, HEADER_MAGIC), "version": (1, VERSION), "record size": (2, RECORD_BYTES),
            "capacity": (_H_CAPACITY, u.shape[0] - 1), "header checksum": (_H_CHECK, int(_checksum_nb(u, 0, 6))),
            "segment index": (_H_SEGMENT, int(m.group(1)) if m else int(h[_H_SEGMENT]))}
    for name, (word, value) in want.items():
        if int(h[word]) != value:
            raise JournalCorruptError(f"{path}: bad file header: {name} is {int(h[word]):#x}, expected {value:#x}; "
                                      f"not a version-{VERSION} ntlab journal segment, or damaged")
    first, flushed = int(h[_H_FIRST]), int(h[_H_FLUSHED])
    status = _status_nb(u[1:])
    n, bad = status.shape[0], np.flatnonzero(status != _VALID)
    b = int(bad[0]) if bad.size else n
    seqs = u[1:b + 1, 2].view(np.int64)
    if (wrong := np.flatnonzero(seqs != first + np.arange(b))).size:
        i = int(wrong[0])
        raise JournalCorruptError(f"{path.name}, slot {i} (byte offset {RECORD_BYTES * (i + 1)}): seq {seqs[i]} "
                                  f"where {first + i} was expected; seqs must rise by 1 (a gap or a duplicate)")
    torn = None
    if b < n:
        why, offset = _WHY[int(status[b])], RECORD_BYTES * (b + 1)
        if is_last and b == n - 1:
            torn = TornRecord(path, b, offset, f"{why} in the last written slot")
        elif is_last and first + b > flushed:
            torn = TornRecord(path, b, offset, f"{why}, then {n - 1 - b} written slot(s), all past the last fsync "
                              f"(seq {flushed}): an unflushed tail written back out of order", n - b)
        else:
            after = f"{n - 1 - b} written slot(s)" if b < n - 1 else "later segments"
            raise JournalCorruptError(f"{path.name}, slot {b} (byte offset {offset}): {why}, followed by {after}; "
                                      f"corrupt in the middle, not torn at the tail: restore it from a copy")
    return h, u[1:b + 1], torn


def _exists(path: Path) -> None:
    if not path.exists():
        raise JournalError(f"no journal at {path}: the path does not exist")


def _scan(path: Path) -> tuple[list[Path], list[np.ndarray], list[np.ndarray], TornRecord | None]:
    _exists(path)
    paths = [path] if path.is_file() else _segment_paths(path)
    if not paths:
        raise JournalError(f"no journal segments (journal.NNNNNN) in {path}; start one with Journal({str(path)!r})")
    headers, rows, torn = [], [], None
    for i, p in enumerate(paths):
        h, r, torn = _read_segment(p, i == len(paths) - 1)
        if rows and (end := int(headers[-1][_H_FIRST]) + rows[-1].shape[0]) != int(h[_H_FIRST]):
            raise JournalCorruptError(f"{p.name} starts at seq {int(h[_H_FIRST])} but {paths[i - 1].name} ends at "
                                      f"seq {end - 1}: records are missing between them")
        headers.append(h)
        rows.append(r)
    return paths, headers, rows, torn


def read_journal(path: str | os.PathLike[str]) -> JournalScan:
    """Read a journal (its folder, or one segment file), checking every record and seq.

    Returns the good records (``kinds`` int64[n], ``seqs`` int64[n], ``payload`` float64[n, 16]),
    the ``segments`` read and ``torn`` (None, or where the discarded torn tail starts and why).
    Raises :class:`JournalCorruptError` naming segment, slot and byte offset on a bad header, a
    bad record followed by written ones, or seqs that do not rise by 1.
    """
    paths, _, rows, torn = _scan(Path(path))
    kinds, seqs, payload = (np.concatenate([r[:, cols] for r in rows]) for cols in (1, 2, slice(3, WORDS - 1)))
    return JournalScan(kinds.view(np.int64), seqs.view(np.int64), payload.view(np.float64), tuple(paths), torn)


def _empty(directory: Path) -> None:
    if _segment_paths(directory):
        raise JournalError(f"{directory} already holds a journal; continue it with "
                           f"Journal.open({str(directory)!r}) or pick an empty folder")


def _lock(path: Path) -> int:
    """Take the writer lock of the journal at ``path`` (an flock on the folder itself); return its fd."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalError(f"the journal in {path} is already open for appending (by another process, or another "
                           "Journal in this one); one writer at a time: close that one first") from None
    return fd


def _check(segment_records: object, flush_interval: object) -> None:
    if isinstance(segment_records, bool) or not isinstance(segment_records, int | np.integer) or not (
            1 <= segment_records <= 2**31):
        raise ConfigError(f"segment_records must be an int from 1 to 2**31, got {segment_records!r}")
    if isinstance(flush_interval, bool) or not isinstance(flush_interval, int | float) or not flush_interval > 0:
        raise ConfigError(f"flush_interval must be a number of seconds > 0, got {flush_interval!r}")


def _flusher(ref: weakref.ref[Journal], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        journal = ref()  # a weak reference: a journal dropped without close() still goes away
        if journal is None:
            return
        journal._flush()
        del journal


class Journal:
    """A journal open for appending (format and durability: see the module docstring).

    ``Journal(directory, *, segment_records=65536, flush_interval=0.005)`` starts a new journal in
    ``directory`` (created if needed; it must not hold one: continue that with :meth:`open`).
    ``segment_records`` is the number of record slots per segment (65,536 = 10 MiB),
    ``flush_interval`` the seconds between the flusher's group commits.

    >>> import tempfile
    >>> with Journal(tempfile.mkdtemp(), segment_records=2) as j:
    ...     seqs = [j.append(1, [100.0, 2.5]) for _ in range(3)]
    ...     j.sync()
    ...     seqs, j.durable_seq, read_journal(j.directory).payload[2, :3].tolist()
    ([1, 2, 3], 3, [100.0, 2.5, 0.0])
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_records: int = 65536,
                 flush_interval: float = 0.005) -> None:
        directory = Path(directory)
        _check(segment_records, flush_interval)
        segment_records = int(segment_records)
        directory.mkdir(parents=True, exist_ok=True)
        _empty(directory)
        self._release = weakref.finalize(self, os.close, _lock(directory))  # also when dropped without close()
        try:
            _empty(directory)  # still, now that it is ours
            self._start(directory, _create_segment(directory, 0, segment_records, 1), 0, segment_records, flush_interval)
        except BaseException:
            self._release()
            raise

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, segment_records: int | None = None,
             flush_interval: float = 0.005) -> Journal:
        """Continue the journal in ``directory`` after its last good record, zero-filling a torn tail.

        ``segment_records`` sizes the new segments (default: the size of the last one).
        """
        directory = Path(directory)
        _exists(directory)
        self = cls.__new__(cls)
        self._release = weakref.finalize(self, os.close, _lock(directory))  # before anything is changed
        try:
            for tmp in directory.glob("journal.*.tmp"):  # a crash while a segment was being created
                tmp.unlink()
            paths, headers, rows, torn = _scan(directory)
            capacity = int(headers[-1][_H_CAPACITY]) if segment_records is None else segment_records
            _check(capacity, flush_interval)
            self._start(directory, paths[-1], rows[-1].shape[0], int(capacity), flush_interval)
        except BaseException:
            self._release()
            raise
        if torn is not None:
            self._words[torn.slot + 1:torn.slot + 1 + torn.discarded] = 0
        self._fsync()  # what a killed process left in the page cache is on disk from here
        self._words[0, _H_FLUSHED] = self._durable
        return self

    def _start(self, directory: Path, path: Path, slot: int, capacity: int, flush_interval: float) -> None:
        self.directory, self._capacity, self._lock = directory, capacity, threading.RLock()
        self._state = np.zeros(STATE_SIZE, np.int64)
        self._map(path)
        self._state[_ST_SLOT], self._state[_ST_OPEN] = slot, 1
        self._state[_ST_SEQ] = int(self._words[0, _H_FIRST]) + slot
        self._durable = self.next_seq - 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_flusher, args=(weakref.ref(self), self._stop, flush_interval),
                                        name=f"journal-flusher:{directory}", daemon=True)
        self._thread.start()

    def _map(self, path: Path) -> None:
        self._path, self._file = path, open(path, "r+b", buffering=0)  # noqa: SIM115 - closed in _unmap
        self._mm = mmap.mmap(self._file.fileno(), 0)  # MAP_SHARED, read + write
        self._words = np.frombuffer(self._mm, dtype=np.int64).reshape(-1, WORDS)
        self._fwords = self._words.view(np.float64)
        self._state[_ST_SEGMENT] = self._words[0, _H_SEGMENT]

    def _unmap(self) -> None:
        self._words = self._fwords = None
        try:
            self._mm.close()
        except BufferError:  # the caller still holds arrays(): the mapping goes when they do
            pass
        self._file.close()
        self._mm = None

    def _fsync(self) -> None:
        if sys.platform != "linux":  # pragma: no cover - on Linux the fsync covers the mapping
            self._mm.flush()
        os.fsync(self._file.fileno())

    def _flush(self) -> None:
        """Group commit: put every record appended so far on disk and advance ``durable_seq``."""
        with self._lock:
            target = self.next_seq - 1
            if self._mm is None or target <= self._durable:
                return
            self._fsync()
            self._durable = target
            self._words[0, _H_FLUSHED] = target  # on disk with the next fsync

    def _check_open(self) -> None:
        if self._mm is None:
            raise JournalError(f"the journal in {self.directory} is closed; continue it with "
                               f"Journal.open({str(self.directory)!r})")

    def append(self, kind: int, payload: object = ()) -> int:
        """Append one record (rolling over to a new segment when full) and return its seq."""
        self._check_open()
        row = np.ascontiguousarray(payload, dtype=np.float64)
        if row.ndim != 1 or row.shape[0] > PAYLOAD_WORDS:
            raise ConfigError(f"payload must be one row of at most {PAYLOAD_WORDS} numbers, got shape {row.shape}")
        if isinstance(kind, bool) or not isinstance(kind, int | np.integer):
            raise ConfigError(f"kind must be an int (the record kind code), got {kind!r}")
        kind = int(kind)
        seq = append_nb(self._words, self._fwords, self._state, kind, row)
        if seq == FULL:
            self.roll()
            seq = append_nb(self._words, self._fwords, self._state, kind, row)
        return int(seq)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(words, fwords, state)`` of the current segment for :func:`append_nb` (again after a roll)."""
        self._check_open()
        return self._words, self._fwords, self._state

    def roll(self) -> Path:
        """Put the current segment on disk, continue in a new one and return its path."""
        self._check_open()
        with self._lock:
            self._flush()
            path = _create_segment(self.directory, int(self._state[_ST_SEGMENT]) + 1, self._capacity, self.next_seq)
            self._unmap()
            self._map(path)
            self._state[_ST_SLOT] = 0
        return path

    def sync(self) -> None:
        """Block until every record appended so far is on disk (``durable_seq == next_seq - 1``)."""
        self._check_open()
        self._flush()

    def close(self) -> None:
        """Refuse further appends, put everything on disk, stop the flusher, unmap. Idempotent."""
        if self._mm is None:
            return
        self._state[_ST_OPEN] = 0
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._flush()
            self._fsync()  # the header's on-disk seq as well
            self._unmap()
        self._release()  # the writer lock: another writer may continue the journal now

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def next_seq(self) -> int:
        """The seq the next record gets."""
        return int(self._state[_ST_SEQ])

    @property
    def durable_seq(self) -> int:
        """The last seq known to be on disk (0: none)."""
        return self._durable

    def __repr__(self) -> str:
        where = "closed" if self._mm is None else self._path.name
        return f"Journal({str(self.directory)!r}, {where}, next_seq={self.next_seq}, durable_seq={self.durable_seq})"
