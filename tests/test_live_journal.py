"""The live journal: round trips across segments, torn tails, corruption, SIGKILL, the flusher."""

from __future__ import annotations

import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from numba import njit

from ntlab.exceptions import ConfigError, DataError
from ntlab.live import journal as jm
from ntlab.live.journal import (
    BAD_PAYLOAD,
    CLOSED,
    FULL,
    HEADER_MAGIC,
    RECORD_BYTES,
    RECORD_MAGIC,
    STALE,
    WORDS,
    Journal,
    JournalCorruptError,
    JournalError,
    append_nb,
    read_journal,
)

NO_JIT = bool(numba.config.DISABLE_JIT)
REPO = Path(__file__).resolve().parents[1]
M32, M64 = 0xFFFFFFFF, 2**64 - 1


def py(f):
    """The plain Python body of a kernel (itself under NUMBA_DISABLE_JIT)."""
    return getattr(f, "py_func", f)


KERNELS = ("_mix_nb", "_fold_nb", "_checksum_nb", "append_nb", "_nonzero_nb", "_status_nb")


# ---------------------------------------------------------------------------------------------
# A plain-integer reference of the checksum, from the format described in the module docstring


def ref_mix(x: int, k: int) -> int:
    lo = x & M32
    p = lo * k
    return ((lo << 32) | ((x >> 32) ^ ((p ^ (p >> 32)) & M32))) & M64


def ref_fold(h: int, w: int) -> int:
    return ref_mix(ref_mix(h ^ w, 0x9E3779B1), 0x85EBCA77)


def ref_checksum(words: list[int]) -> int:
    lanes = [0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89]
    for i, w in enumerate(words):
        lanes[i % 4] = ref_fold(lanes[i % 4], w & M64)
    a, b, c, d = lanes
    h = ref_fold(ref_fold(a, ref_fold(b, 1)) ^ ref_fold(ref_fold(c, ref_fold(d, 1)), 1), 1)
    return h or 1


def payload(seq: int) -> np.ndarray:
    """The payload of record ``seq`` in these tests: 1 to 16 values, a function of seq."""
    return seq * 0.5 + np.arange(1 + seq % 16) - 3.25


def padded(seq: int) -> np.ndarray:
    out = np.zeros(16)
    out[: 1 + seq % 16] = payload(seq)
    return out


def write(directory: Path, n: int, *, segment_records: int = 8) -> Journal:
    j = Journal(directory, segment_records=segment_records)
    for _ in range(n):
        j.append(j.next_seq % 5, payload(j.next_seq))
    j.close()
    return j


def check_records(scan: jm.JournalScan, n: int) -> None:
    assert scan.n_records == n
    np.testing.assert_array_equal(scan.seqs, np.arange(1, n + 1))
    np.testing.assert_array_equal(scan.kinds, np.arange(1, n + 1) % 5)
    expected = np.array([padded(s) for s in range(1, n + 1)]).reshape(n, 16)
    np.testing.assert_array_equal(scan.payload, expected)


def segment(directory: Path, index: int = 0) -> Path:
    return directory / f"journal.{index:06d}"


def poke(path: Path, slot: int, word: int, value: int | None = None, *, bit: int | None = None) -> None:
    """Set (or flip one bit of) a word of a record slot (slot -1: the header) in a segment file."""
    m = np.memmap(path, dtype=np.uint64, mode="r+").reshape(-1, WORDS)
    if bit is None:
        m[slot + 1, word] = np.uint64(value % 2**64)
    else:
        m[slot + 1, word] ^= np.uint64(1) << np.uint64(bit)
    m.flush()
    del m


def clear(path: Path, slot: int) -> None:
    """Zero a whole record slot, as if its page never reached the disk."""
    for w in range(WORDS):
        poke(path, slot, w, 0)


# ---------------------------------------------------------------------------------------------
# Round trips


def test_round_trip_across_segments_and_reopen(tmp_path: Path) -> None:
    j = write(tmp_path, 30, segment_records=7)
    assert j.next_seq == 31 and j.durable_seq == 30
    scan = read_journal(tmp_path)
    check_records(scan, 30)
    assert scan.torn is None and len(scan.segments) == 5  # 7 + 7 + 7 + 7 + 2
    assert repr(scan) == "JournalScan(30 records in 5 segment(s), no torn tail)"
    with Journal.open(tmp_path) as j:
        assert (j.next_seq, j.durable_seq) == (31, 30)
        for _ in range(12):
            j.append(j.next_seq % 5, payload(j.next_seq))
    check_records(read_journal(tmp_path), 42)
    one = read_journal(segment(tmp_path, 2))  # one segment file alone
    np.testing.assert_array_equal(one.seqs, np.arange(15, 22))


def test_record_bytes_on_disk(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_records=4) as j:
        j.append(-7, [1.5, -2.0])
    raw = np.fromfile(segment(tmp_path), dtype="<u8").reshape(-1, WORDS)
    assert raw.shape == (5, WORDS) and raw.nbytes == 5 * RECORD_BYTES
    assert bytes(raw[0, :1].tobytes()) == b"NTJHDR\x01\x00" and int(raw[0, 0]) == HEADER_MAGIC
    assert raw[0, 1:6].tolist() == [1, 160, 4, 0, 1] and int(raw[0, 7]) == 1  # on-disk seq after close
    rec = raw[1]
    assert bytes(rec[:1].tobytes()) == b"NTJREC\x01\x00" and int(rec[0]) == RECORD_MAGIC
    assert rec[1:3].view(np.int64).tolist() == [-7, 1]
    assert rec[3:19].view(np.float64).tolist() == [1.5, -2.0] + [0.0] * 14
    assert int(rec[19]) == ref_checksum([int(w) for w in rec[:19]])
    assert not raw[2:].any()


def test_checksum_matches_reference_and_sees_every_single_bit_flip() -> None:
    rng = np.random.default_rng(7)
    rows = rng.integers(0, 2**63, size=(6, WORDS), dtype=np.int64) * np.array([1, -1, 1, -1, 1, -1])[:, None]
    for m in (WORDS - 1, 6, 5, 4, 1):
        for r in range(rows.shape[0]):
            assert int(jm._checksum_nb(rows, r, m)) == ref_checksum([int(w) for w in rows[r, :m]])
    u = rows[:1].view(np.uint64).copy()
    base = int(jm._checksum_nb(u, 0, WORDS - 1))
    flips = np.repeat(u, (WORDS - 1) * 64, axis=0)
    for i in range((WORDS - 1) * 64):
        flips[i, i // 64] ^= np.uint64(1) << np.uint64(i % 64)
    sums = {int(jm._checksum_nb(flips, i, WORDS - 1)) for i in range(flips.shape[0])}
    assert base not in sums and len(sums) == flips.shape[0]


@njit
def _append_rows(words: np.ndarray, fwords: np.ndarray, state: np.ndarray, kinds: np.ndarray,
                 rows: np.ndarray) -> int:
    for i in range(rows.shape[0]):
        if append_nb(words, fwords, state, kinds[i], rows[i]) < 0:
            return i
    return rows.shape[0]


def test_compiled_caller_rolls_over_from_python(tmp_path: Path) -> None:
    n = 50
    rows = np.array([padded(s) for s in range(1, n + 1)])
    kinds = np.arange(1, n + 1) % 5
    j = Journal(tmp_path, segment_records=16)
    done = 0
    while done < n:
        words, fwords, state = j.arrays()
        done += _append_rows(words, fwords, state, kinds[done:], rows[done:])
        if done < n:
            assert append_nb(words, fwords, state, 1, rows[0]) == FULL
            j.roll()
            assert append_nb(words, fwords, state, 1, rows[0]) == STALE  # arrays of the old segment
    j.close()
    assert append_nb(words, fwords, state, 1, rows[0]) == CLOSED  # held arrays outlive close()
    check_records(read_journal(tmp_path), n)


def _run_kernels(k: SimpleNamespace) -> tuple[np.ndarray, list[int], list[int], list[bool]]:
    words = np.zeros((4, WORDS), np.int64)
    words[0, 4] = 3
    state = np.array([0, 41, 3, 1, 0, 0, 0, 0], np.int64)
    got = [k.append_nb(words, words.view(np.float64), state, 9, payload(s)) for s in (1, 2, 3, 4)]
    got.append(k.append_nb(words, words.view(np.float64), state, 9, np.zeros(17)))
    state[2] = 4
    got.append(k.append_nb(words, words.view(np.float64), state, 9, np.zeros(1)))
    state[3] = 0
    got.append(k.append_nb(words, words.view(np.float64), state, 9, np.zeros(1)))
    u = np.concatenate([words[1:].view(np.uint64), np.zeros((3, WORDS), np.uint64)])
    u[1, 5] ^= np.uint64(1)  # checksum mismatch
    u[2, 0] = np.uint64(5)  # bad magic
    u[4, 0] = np.uint64(RECORD_MAGIC)  # an empty slot (3) before a written one (4)
    sums = [int(k._checksum_nb(u, r, m)) for r in range(3) for m in (WORDS - 1, 6, 1)]
    return words, got, k._status_nb(u).tolist() + sums, [k._nonzero_nb(u[5]), k._nonzero_nb(u[0])]


def test_kernels_python_bodies_match_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain bodies do what the compiled ones do (and coverage sees them with the JIT on)."""
    compiled = _run_kernels(SimpleNamespace(**{name: getattr(jm, name) for name in KERNELS}))
    with monkeypatch.context() as mp:  # the kernels as plain Python calling each other
        for name in KERNELS:
            mp.setattr(jm, name, py(getattr(jm, name)))
        plain = _run_kernels(SimpleNamespace(**{name: getattr(jm, name) for name in KERNELS}))
    np.testing.assert_array_equal(compiled[0], plain[0])
    assert compiled[1] == plain[1] == [41, 42, 43, FULL, BAD_PAYLOAD, STALE, CLOSED]
    assert compiled[2] == plain[2] and compiled[2][:5] == [1, 3, 2, 0, 3]
    assert [bool(x) for x in compiled[3]] == plain[3] == [False, True]


# ---------------------------------------------------------------------------------------------
# Torn tails


def _record_row(seq: int) -> np.ndarray:
    words = np.zeros((2, WORDS), np.int64)
    state = np.array([0, seq, 0, 1, 0, 0, 0, 0], np.int64)
    assert append_nb(words, words.view(np.float64), state, seq % 5, payload(seq)) == seq
    return words[1].view(np.uint64)


@pytest.mark.parametrize("k", range(WORDS))
def test_torn_tail_of_a_cut_append(tmp_path: Path, k: int) -> None:
    write(tmp_path, 5)
    row = _record_row(6)
    for w in range(k + 1):  # words 0..k of record 6 reached the page cache; never its checksum
        poke(segment(tmp_path), 5, w, int(row[w]) ^ (0xBAD if w == WORDS - 1 else 0))
    scan = read_journal(tmp_path)
    check_records(scan, 5)
    torn = scan.torn
    assert (torn.segment, torn.slot, torn.offset, torn.discarded) == (segment(tmp_path), 5, 6 * RECORD_BYTES, 1)
    assert torn.reason == "checksum mismatch in the last written slot"
    assert str(torn) == "journal.000000, slot 5 (byte offset 960): checksum mismatch in the last written slot"
    with Journal.open(tmp_path) as j:
        assert j.next_seq == 6
        assert j.append(6 % 5, payload(6)) == 6
    scan = read_journal(tmp_path)
    check_records(scan, 6)
    assert scan.torn is None


def test_flipped_bit_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, 11)  # segments of 8: the last record is slot 2 of journal.000001
    poke(segment(tmp_path, 1), 2, 10, bit=37)
    scan = read_journal(tmp_path)
    check_records(scan, 10)
    assert (scan.torn.segment.name, scan.torn.slot, scan.torn.offset) == ("journal.000001", 2, 480)
    assert "torn at journal.000001, slot 2" in repr(scan)
    poke(segment(tmp_path, 1), 2, 0, 12345)  # a garbled magic is torn as well
    assert read_journal(tmp_path).torn.reason == "bad magic in the last written slot"
    with Journal.open(tmp_path) as j:
        assert j.append(11 % 5, payload(11)) == 11
    check_records(read_journal(tmp_path), 11)


def test_unflushed_tail_with_a_hole_is_torn_until_flushed(tmp_path: Path) -> None:
    """A power cut may write back pages past the last fsync in any order: holes there are a tail."""
    j = Journal(tmp_path / "live", segment_records=64, flush_interval=3600)
    for _ in range(10):
        j.append(j.next_seq % 5, payload(j.next_seq))
    clear(segment(tmp_path / "live"), 3)  # slot 3 never reached the disk, 4..9 did
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")  # the disk as the power cut left it
    scan = read_journal(tmp_path / "crashed")
    check_records(scan, 3)
    assert (scan.torn.slot, scan.torn.discarded) == (3, 7) and "past the last fsync (seq 0)" in scan.torn.reason
    with Journal.open(tmp_path / "crashed") as k:
        assert k.append(4 % 5, payload(4)) == 4
    check_records(read_journal(tmp_path / "crashed"), 4)
    j.close()  # now seq 10 is on disk: the hole is corruption
    with pytest.raises(JournalCorruptError, match=r"journal\.000000, slot 3 \(byte offset 640\): empty slot, "):
        read_journal(tmp_path / "live")


# ---------------------------------------------------------------------------------------------
# Corruption


@pytest.mark.parametrize(("word", "bit"), [(0, 0), (1, 63), (2, 1), (10, 52), (19, 5)])
def test_corruption_in_the_middle(tmp_path: Path, word: int, bit: int) -> None:
    write(tmp_path, 10, segment_records=16)
    poke(segment(tmp_path), 4, word, bit=bit)  # record 5 of 10
    why = "bad magic" if word == 0 else "checksum mismatch"
    with pytest.raises(JournalCorruptError, match=rf"journal\.000000, slot 4 \(byte offset 800\): {why}, "
                       r"followed by 5 written slot\(s\); corrupt in the middle"):
        read_journal(tmp_path)
    with pytest.raises(JournalCorruptError, match="slot 4"):
        Journal.open(tmp_path)
    assert issubclass(JournalCorruptError, DataError)


def test_torn_slot_before_later_segments_is_corruption(tmp_path: Path) -> None:
    write(tmp_path, 10)
    poke(segment(tmp_path), 7, 12, bit=0)
    with pytest.raises(JournalCorruptError, match=r"journal\.000000, slot 7 .*followed by later segments"):
        read_journal(tmp_path)


@pytest.mark.parametrize(("shift", "expected"), [(1, 5), (-1, 5)])
def test_seq_gap_or_duplicate(tmp_path: Path, shift: int, expected: int) -> None:
    with Journal(tmp_path) as j:
        for _ in range(4):
            j.append(1, [1.0])
        j.arrays()[2][1] += shift  # the next record gets seq 5 + shift
        j.append(1, [1.0])
    with pytest.raises(JournalCorruptError, match=rf"slot 4 \(byte offset 800\): seq {5 + shift} where "
                       rf"{expected} was expected; seqs must rise by 1"):
        read_journal(tmp_path)


@pytest.mark.parametrize(("word", "value", "what"), [
    (0, 1234, "magic is 0x4d2, expected 0x15244484a544e"), (1, 2, "version is 0x2, expected 0x1"),
    (2, 128, "record size is 0x80, expected 0xa0"), (3, 9, "capacity is 0x9, expected 0x8"),
    (4, 1, "header checksum is 0x"), (5, 7, "header checksum is 0x")])
def test_bad_header(tmp_path: Path, word: int, value: int, what: str) -> None:
    write(tmp_path, 3)
    poke(segment(tmp_path), -1, word, value)
    with pytest.raises(JournalCorruptError, match=rf"journal\.000000: bad file header: {what}.*not a version-1 ntlab"):
        read_journal(tmp_path)


def test_bad_files_and_folders(tmp_path: Path) -> None:
    write(tmp_path / "a", 3)
    segment(tmp_path / "a").rename(segment(tmp_path / "a", 4))
    with pytest.raises(JournalCorruptError, match=r"segment index is 0x0, expected 0x4"):
        read_journal(tmp_path / "a")
    write(tmp_path / "b", 3)
    with segment(tmp_path / "b").open("ab") as f:
        f.write(b"1234567")
    with pytest.raises(JournalCorruptError, match=r"is not a header plus whole 160-byte records"):
        read_journal(tmp_path / "b")
    write(tmp_path / "c", 20)
    segment(tmp_path / "c", 1).unlink()
    with pytest.raises(JournalCorruptError, match=r"journal\.000000 and journal\.000002 .* journal\.000001 is missing"):
        read_journal(tmp_path / "c")
    with Journal(tmp_path / "d", segment_records=8) as j:  # a manual roll leaves a part-filled segment
        j.append(1, [])
        j.append(1, [])
        j.roll()
        j.append(1, [])
    assert read_journal(tmp_path / "d").seqs.tolist() == [1, 2, 3]
    clear(segment(tmp_path / "d"), 1)
    with pytest.raises(JournalCorruptError, match=r"journal\.000001 starts at seq 3 but journal\.000000 ends at seq 1"):
        read_journal(tmp_path / "d")


def test_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="the path does not exist"):
        read_journal(tmp_path / "nope")
    with pytest.raises(JournalError, match=r"no journal segments \(journal.NNNNNN\) in"):
        Journal.open(tmp_path)
    for bad in (0, True, 2.5, 2**40):
        with pytest.raises(ConfigError, match=rf"segment_records must be an int from 1 to 2\*\*31, got {bad!r}"):
            Journal(tmp_path / "x", segment_records=bad)
    for bad in (0, -1.0, "1", False):
        with pytest.raises(ConfigError, match=rf"flush_interval must be a number of seconds > 0, got {bad!r}"):
            Journal(tmp_path / "x", flush_interval=bad)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    with Journal(tmp_path / "j", segment_records=np.int64(4)) as j:
        with pytest.raises(JournalError, match="already holds a journal; continue it with Journal.open"):
            Journal(tmp_path / "j")
        with pytest.raises(ConfigError, match=r"at most 16 numbers, got shape \(17,\)"):
            j.append(1, np.zeros(17))
        with pytest.raises(ConfigError, match=r"got shape \(2, 2\)"):
            j.append(1, np.zeros((2, 2)))
        with pytest.raises(ConfigError, match="kind must be an int"):
            j.append(1.0, [])
        assert j.append(np.int8(3), 2.0) == 1


# ---------------------------------------------------------------------------------------------
# Flusher, close, open


def test_flusher_sync_close(tmp_path: Path) -> None:
    j = Journal(tmp_path, flush_interval=0.001)
    assert j.durable_seq == 0 and j.next_seq == 1
    j.append(1, [1.0])
    deadline = time.monotonic() + 10
    while j.durable_seq < 1 and time.monotonic() < deadline:  # the flusher alone
        time.sleep(0.001)
    assert j.durable_seq == 1
    for _ in range(100):
        j.append(2, [2.0])
    j.sync()
    assert j.durable_seq == j.next_seq - 1 == 101
    assert repr(j) == f"Journal({str(tmp_path)!r}, journal.000000, next_seq=102, durable_seq=101)"
    j.close()
    j.close()
    assert repr(j) == f"Journal({str(tmp_path)!r}, closed, next_seq=102, durable_seq=101)"
    for call in (lambda: j.append(1, []), j.sync, j.arrays, j.roll):
        with pytest.raises(JournalError, match=r"is closed; continue it with Journal.open\("):
            call()
    assert not j._thread.is_alive()


def test_open_continues_after_segment_boundaries(tmp_path: Path) -> None:
    write(tmp_path, 16)  # two full segments of 8
    (tmp_path / "journal.000002.tmp").write_bytes(b"half-made")  # a crash while rolling over
    with Journal.open(tmp_path, segment_records=3) as j:
        assert not (tmp_path / "journal.000002.tmp").exists()
        assert j.append(17 % 5, payload(17)) == 17  # full: rolls over to a segment of 3
        assert j.durable_seq >= 16
    check_records(read_journal(tmp_path), 17)
    assert len(read_journal(tmp_path).segments) == 3
    with Journal.open(tmp_path) as j:  # a segment that is empty so far
        j.roll()
    with Journal.open(tmp_path) as j:
        assert j.next_seq == 18
        assert j._path.name == "journal.000003"


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_one_writer_at_a_time(tmp_path: Path) -> None:
    """Two writers would each append at the same slots and overwrite each other's records (a run
    resumed twice at once): a second one, in this process or another, is refused."""
    j = Journal(tmp_path, segment_records=4)
    j.append(1, payload(1))
    with pytest.raises(JournalError, match="already open for appending .* one writer at a time"):
        Journal.open(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    code = "import sys; from ntlab.live.journal import Journal; Journal.open(sys.argv[1]).append(7)"
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert other.returncode == 1 and "already open for appending" in other.stderr, other.stderr
    assert j.append(2, payload(2)) == 2  # the writer goes on, nothing overwritten
    j.close()
    with Journal.open(tmp_path) as k:  # close() hands the lock on
        assert k.append(3, payload(3)) == 3
    check_records(read_journal(tmp_path), 3)
    k = Journal.open(tmp_path)
    del k  # dropped without close(): the lock goes with it
    gc.collect()
    Journal.open(tmp_path).close()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dropped_journal_stops_its_flusher(tmp_path: Path) -> None:
    j = Journal(tmp_path, flush_interval=0.001)
    thread = j._thread
    del j
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


# ---------------------------------------------------------------------------------------------
# SIGKILL at a random moment: every acknowledged record is there, nothing is misread

CHILD = """
import sys
import numpy as np
from ntlab.live.journal import Journal
j = Journal(sys.argv[1], segment_records=int(sys.argv[2]), flush_interval=0.002)
print("ready", flush=True)
while True:
    s = j.next_seq
    seq = j.append(s % 5, s * 0.5 + np.arange(1 + s % 16) - 3.25)
    sys.stdout.write(f"{seq}\\n")
    sys.stdout.flush()
"""


def test_sigkill_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    children = []
    for i in range(5):
        cmd = [sys.executable, "-c", CHILD, str(tmp_path / f"j{i}"), str(rng.choice([7, 50, 400]))]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda p=proc, c=chunks: c.extend(iter(lambda: p.stdout.read1(65536), b"")))
        children.append((proc, chunks, reader, rng.uniform(0.05, 0.4)))
    for proc, chunks, reader, _ in children:
        reader.start()
    for proc, chunks, reader, delay in children:
        deadline = time.monotonic() + 60
        while not b"".join(chunks).startswith(b"ready\n") and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    for i, (proc, chunks, reader, _) in enumerate(children):
        assert proc.wait(timeout=30) == -signal.SIGKILL
        reader.join(timeout=30)
        lines = b"".join(chunks).split(b"\n")[1:-1]  # "ready", then whole lines only
        acked = [int(x) for x in lines]
        assert acked == list(range(1, len(acked) + 1)) and acked, f"child {i} acknowledged {len(acked)} records"
        scan = read_journal(tmp_path / f"j{i}")
        n = scan.n_records
        assert len(acked) <= n <= len(acked) + 1  # at most the record being acknowledged when killed
        check_records(scan, n)
        with Journal.open(tmp_path / f"j{i}") as j:
            assert j.append((n + 1) % 5, payload(n + 1)) == n + 1
        check_records(read_journal(tmp_path / f"j{i}"), n + 1)
