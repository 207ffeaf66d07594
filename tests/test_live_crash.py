"""Crash test: a headless live session (``ntlab live run``) killed with SIGKILL at random moments.

After every kill the session's journal and the paper venue's record are checked, the books are
recovered and compared with an independent recomputation from the venue's record, and the
session is restarted with ``--resume``. At the end the session runs to the end of its data.

The suite kills 20 times (5 in its NUMBA_DISABLE_JIT coverage pass, where the checks run
interpreted: 20 kills took 90 s there); the soak run kills 100 times:
``NTLAB_CRASH_KILLS=100 .venv/bin/python -m pytest tests/test_live_crash.py`` (``make soak``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ntlab.exceptions import NtlabError
from ntlab.execution import orders as o
from ntlab.live import step as st
from ntlab.live.journal import read_journal
from ntlab.live.recovery import recover

KILLS = int(os.environ.get("NTLAB_CRASH_KILLS", "5" if os.environ.get("NUMBA_DISABLE_JIT") == "1" else "20"))
START_CASH = 1_000_000.0


def _command(journal: Path, resume: bool, *pace: str) -> list[str]:
    cmd = [
        sys.executable, "-c", "from ntlab.cli import main; main()", "live", "run", "ntlab.strategy.examples:EmaCross",
        "-d", "es_ticks", "-p", "span", "20", "--fee-bps", "0.5", "--journal", str(journal), "--every", "60",
    ]  # fmt: skip
    if resume:
        cmd.append("--resume")
    return [*cmd, *pace]


# The killed sessions run the compiled engine, as in production, also in the suite's
# NUMBA_DISABLE_JIT pass (coverage does not follow subprocesses; interpreted, they took 90 s).
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}


def _session(journal: Path, resume: bool, *pace: str) -> subprocess.Popen:
    return subprocess.Popen(_command(journal, resume, *pace), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_CHILD_ENV)


def _independent_books(venue: np.ndarray) -> dict[str, float]:
    """Cash, position, average price and realised P&L from the venue's fills, position episode
    by episode (a different route from the broker's running average)."""
    fills = venue[np.isin(venue[:, o.E_KIND], (o.FILLED, o.PARTIALLY_FILLED))]
    qty, price, fee = fills[:, o.E_QTY], fills[:, o.E_PRICE], fills[:, o.E_FEE]
    cash = START_CASH - float(np.sum(qty * price)) - float(np.sum(fee))
    position = float(np.sum(qty))
    realised, pos, cost = 0.0, 0.0, 0.0  # cost: signed cost basis of the open position
    for q, p in zip(qty.tolist(), price.tolist(), strict=True):
        if pos != 0 and np.sign(q) != np.sign(pos):  # closes (part of) the position
            closed = min(abs(q), abs(pos))
            basis = cost * closed / abs(pos)
            realised += np.sign(pos) * closed * p - basis
            cost -= basis
            pos += np.sign(q) * closed
            q -= np.sign(q) * closed
        if q != 0:
            cost += q * p
            pos += q
    avg = abs(cost / pos) if pos else 0.0
    return {"cash": cash, "position": position, "avg_price": avg, "realised": realised}


def _check_records(journal_dir: Path) -> np.ndarray:
    """No venue event lost or doubled; return the venue's record."""
    mine, theirs = read_journal(journal_dir / "journal"), read_journal(journal_dir / "venue")
    venue = theirs.payload[theirs.kinds == st.K_VENUE]
    ours = mine.payload[mine.kinds == st.K_VENUE]
    np.testing.assert_array_equal(ours, venue)  # recovery appended what the journal had missed
    assert np.all(np.diff(venue[:, o.E_BAR]) >= 0), "an event was processed again after a restart"
    ids, kinds = venue[:, o.E_ORDER].astype(np.int64), venue[:, o.E_KIND].astype(np.int64)
    for kind in (o.ACCEPTED, o.FILLED, o.CANCELLED, o.REJECTED):
        seen = ids[kinds == kind]
        assert np.unique(seen).size == seen.size, f"an order has two {o.EVENT_KINDS[kind]} events"
    assert np.unique(ids[kinds == o.ACCEPTED]).size + np.unique(ids[kinds == o.REJECTED]).size == np.unique(ids).size
    return venue


def _started(journal_dir: Path) -> bool:
    try:
        return bool((read_journal(journal_dir / "journal").kinds == st.K_START).any())
    except NtlabError:  # no journal folder or no segment yet
        return False


def _check_books(rec, venue: np.ndarray) -> None:
    expected = _independent_books(venue)
    assert rec.cash == pytest.approx(expected["cash"], rel=1e-12)
    assert rec.position[0] == pytest.approx(expected["position"], abs=1e-9)
    assert rec.avg_price[0] == pytest.approx(expected["avg_price"], rel=1e-9)
    assert rec.realised[0] == pytest.approx(expected["realised"], rel=1e-9, abs=1e-6)
    open_ids = set(rec.open_orders[:, o.O_ID].astype(int).tolist())
    done = set(venue[np.isin(venue[:, o.E_KIND], (o.FILLED, o.CANCELLED)), o.E_ORDER].astype(int).tolist())
    assert not open_ids & done


def test_sigkill_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    journal = tmp_path / "session"
    next_events, killed_running, repaired = [], 0, 0
    for kill in range(KILLS):
        proc = _session(journal, kill > 0 and (journal / "journal").is_dir(), "--rate", "5000")
        if kill % 4 == 3:  # during start-up: imports, data, recovery
            time.sleep(rng.uniform(0.0, 1.5))
        else:  # while events flow
            line = proc.stdout.readline()
            assert line.startswith(("started", "resumed")), proc.stderr.read()
            if line.startswith("resumed"):
                proc.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.3))
            killed_running += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if not _started(journal):
            continue  # killed before the session's start record: nothing happened yet
        rec = recover(journal, 1)
        venue = _check_records(journal)
        _check_books(rec, venue)
        next_events.append(rec.next_event)
        repaired += rec.appended > 0 or bool(rec.torn) or bool(rec.unacknowledged)
    assert next_events == sorted(next_events), "a restart went back in the data"
    assert killed_running > 0
    print(f"{KILLS} kills, {killed_running} while events flowed, {repaired} left a torn record, missed venue events "
          f"or unacknowledged intents; events done after each: {next_events}")
    starts = (read_journal(journal / "journal").kinds == st.K_START).sum() if _started(journal) else 0
    final = subprocess.run(_command(journal, resume=True), capture_output=True, text=True, timeout=600, check=True, env=_CHILD_ENV)
    assert "finished" in final.stdout.splitlines()[-1], final.stdout + final.stderr
    assert (read_journal(journal / "journal").kinds == st.K_START).sum() == starts + 1  # one session, not two at once
    rec = recover(journal, 1)
    venue = _check_records(journal)
    _check_books(rec, venue)
    assert rec.next_event == 84_568  # every event of the ES ticks (trades stamped alike are one event)
    assert (venue[:, o.E_KIND] == o.FILLED).sum() > 100
