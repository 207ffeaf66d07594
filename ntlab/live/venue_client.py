"""The live engine's link to a venue over a WebSocket (:mod:`ntlab.live.venue_server`'s protocol).

``LiveEngine(strategy, feed, venue=RemoteVenue(url))`` sends its orders over a real socket
instead of filling them in-process. The engine's books change only on the venue's reports; no
order is lost or doubled across disconnects because of four rules:

1. **Client order ids.** Order ``n`` of engine ``name`` is ``cid = "name-n"``; the order ids
   continue after a restart (the journal keeps them), and the venue ignores a ``new`` whose cid
   it already has.
2. **Sequence numbers.** The venue numbers its reports per account (1, 2, ...). Each report the
   engine books is journalled with its number (``V_SEQ``), so after a reconnect or a restart the
   link asks ``resume`` from the last one booked and the venue re-sends what came after;
   reports at or below it are skipped (counted as ``duplicate_reports``).
3. **Resend.** Orders and cancels sent but not yet answered are sent again after the resume
   (the venue dedupes them by cid). After a restart, the orders the journal shows open are sent
   again, and so are the cancels journalled for them (a cancel the venue already answered only
   draws a ``cancel_rejected``).
4. **Reconciliation.** After each (re)connection the link asks the venue's positions; once every
   report up to the venue's ``last_seq`` is booked, they must equal the engine's, otherwise
   trading is halted and an alarm is raised (``snapshot().alarms``).

Reports that do not change the books (``accepted``, ``cancel_rejected``) are counted, not
journalled. Everything runs in the engine's thread: :class:`VenueLink` never blocks longer than
its ``connect_timeout`` (a reconnect attempt), and attempts are spaced by :class:`Backoff`.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ntlab.exceptions import ConfigError
from ntlab.live.ws_client import Backoff, WsConnection, WsError

__all__ = ["RemoteVenue", "VenueLink"]

_ENV_TOKEN = "NTLAB_VENUE_TOKEN"
BOOKED = ("rejected", "partially_filled", "filled", "cancelled")  # reports that change the books
STATUSES = ("accepted", "cancel_rejected", *BOOKED)


@dataclass(frozen=True, kw_only=True)
class RemoteVenue:
    """Where and how the engine reaches a venue server (``ntlab venue serve``).

    Parameters
    ----------
    url
        ``ws://127.0.0.1:PORT`` of the venue.
    account
        Account name to log in with.
    token
        The venue's token; None reads ``NTLAB_VENUE_TOKEN`` from the environment (secrets never
        belong in a notebook).
    backoff
        Delays between reconnection attempts.
    connect_timeout
        Seconds allowed for one connection attempt.
    settle_timeout
        When the feed ends, seconds to wait for the answers to orders still in flight.
    """

    url: str
    account: str = "paper"
    token: str | None = field(default=None, repr=False)
    backoff: Backoff = field(default_factory=Backoff)
    connect_timeout: float = 2.0
    settle_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not (isinstance(self.url, str) and self.url.startswith("ws://")):
            raise ConfigError(f"url={self.url!r} must be a ws:// URL of a venue server (ntlab venue serve prints it)")
        if not (isinstance(self.account, str) and self.account):
            raise ConfigError(f"account={self.account!r} must be a non-empty string")
        for name in ("connect_timeout", "settle_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name}={value!r} must be a number of seconds > 0")


class VenueLink:
    """The connection state of one engine to its venue (see the module docstring).

    The engine calls :meth:`send_new` / :meth:`send_cancel` for its outbox, :meth:`poll` for
    reports (each at most once, in sequence order) and reads :attr:`stats`.
    """

    def __init__(self, config: RemoteVenue, *, last_seq: int = 0) -> None:
        self.config = config
        self.last_seq = int(last_seq)
        self.pending_new: dict[str, bytes] = {}  # cid -> message, until accepted/rejected
        self.pending_cancel: dict[str, bytes] = {}  # cid -> message, until cancelled/cancel_rejected
        self.positions_reply: dict[str, Any] | None = None
        self.fatal: str | None = None
        self.stats: dict[str, int] = dict.fromkeys(
            ("connects", "disconnects", "failed_attempts", "sent", "resent", "reports", "duplicate_reports", "bad_frames", "errors", "foreign_reports"), 0
        )
        self._conn: WsConnection | None = None
        self._ready = False  # logged in and resumed: new orders go out at once
        self._asked = -1  # the last seq a gap made us resume from
        self._failures = 0
        self._next_attempt = 0.0
        self._rng = random.Random()
        self.last_disconnect: str | None = None

    # -- connection ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed and self._ready

    def connect(self) -> bool:
        """Try to connect now if the backoff allows; True when a connection was opened."""
        if self.fatal or (self._conn is not None and not self._conn.closed):
            return False
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        try:
            self._conn = WsConnection(self.config.url, timeout=self.config.connect_timeout)
        except WsError as exc:
            self.stats["failed_attempts"] += 1
            self.last_disconnect = str(exc)
            self._next_attempt = now + self.config.backoff.delay(self._failures, self._rng)
            self._failures += 1
            self._conn = None
            return False
        self._ready = False
        token = self.config.token if self.config.token is not None else os.environ.get(_ENV_TOKEN)
        self._conn.send_text(json.dumps({"op": "login", "account": self.config.account, "token": token}))
        self._conn.send_text(json.dumps({"op": "resume", "after_seq": self.last_seq}))
        self.stats["connects"] += 1
        return True

    def _dropped(self) -> None:
        assert self._conn is not None
        self.last_disconnect = self._conn.close_reason
        self._conn = None
        self._ready = False
        self.stats["disconnects"] += 1
        self._next_attempt = time.monotonic() + self.config.backoff.delay(self._failures, self._rng)
        self._failures += 1

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready = False

    # -- orders -------------------------------------------------------------------------------------
    def send_new(self, cid: str, symbol: str, qty: float, order_type: str, price: float | None, md: Any = None) -> None:
        """Send a new order (``qty`` signed: > 0 buys); kept until the venue answers it."""
        msg = {"op": "new", "cid": cid, "symbol": symbol, "side": "buy" if qty > 0 else "sell", "qty": abs(qty),
               "type": order_type, "price": price, "md": md}  # fmt: skip
        self.pending_new[cid] = data = json.dumps(msg).encode()
        self._send(data)

    def send_cancel(self, cid: str) -> None:
        """Ask the venue to cancel order ``cid``; kept until the venue answers it."""
        self.pending_cancel[cid] = data = json.dumps({"op": "cancel", "cid": cid}).encode()
        self._send(data)

    def _send(self, data: bytes) -> None:
        if self.connected and self._conn.send_text(data):  # type: ignore[union-attr]
            self.stats["sent"] += 1

    @property
    def in_flight(self) -> int:
        """Orders and cancels sent and not answered yet."""
        return len(self.pending_new) + len(self.pending_cancel)

    # -- reports ------------------------------------------------------------------------------------
    def poll(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Reports received since the last call, in sequence order, each once (see the module rules).

        Reconnects (subject to the backoff) when the connection is down."""
        conn = self._conn
        if conn is None or conn.closed:
            if conn is not None:
                self._dropped()
            self.connect()
            return []
        out: list[dict[str, Any]] = []
        for frame in conn.receive(wait):
            try:
                msg = json.loads(frame)
                op = msg["op"]
            except (ValueError, TypeError, KeyError):
                self.stats["bad_frames"] += 1
                continue
            if op == "report":
                seq = msg.get("seq")
                if not isinstance(seq, int) or msg.get("status") not in STATUSES:
                    self.stats["bad_frames"] += 1
                elif seq <= self.last_seq:
                    self.stats["duplicate_reports"] += 1
                elif seq > self.last_seq + 1:  # a report went missing on the way: ask again from the last one
                    if self._asked != self.last_seq:
                        self._asked = self.last_seq
                        conn.send_text(json.dumps({"op": "resume", "after_seq": self.last_seq}))
                else:
                    self.last_seq = seq
                    self.stats["reports"] += 1
                    cid = msg.get("cid")
                    if msg["status"] in ("accepted", "rejected"):
                        self.pending_new.pop(cid, None)
                    if msg["status"] in ("cancelled", "cancel_rejected"):
                        self.pending_cancel.pop(cid, None)
                        if msg["status"] == "cancelled":
                            self.pending_new.pop(cid, None)
                    out.append(msg)
            elif op == "resumed":
                self._ready = True
                self._failures = 0
                for data in [*self.pending_new.values(), *self.pending_cancel.values()]:
                    if conn.send_text(data):
                        self.stats["resent"] += 1
                conn.send_text(b'{"op":"positions"}')
            elif op == "positions":
                self.positions_reply = msg
            elif op == "error":
                self.stats["errors"] += 1
                if msg.get("code") == "auth":
                    self.fatal = f"the venue refused the login of account {self.config.account!r}: {msg.get('msg')}"
            elif op not in ("login", "pong"):
                self.stats["bad_frames"] += 1
        if conn.closed:
            self._dropped()
        return out

    def __repr__(self) -> str:
        state = "connected" if self.connected else f"disconnected ({self.last_disconnect})"
        return f"VenueLink({self.config.url}, {self.config.account!r}, {state}, last seq {self.last_seq}, {self.in_flight} in flight)"
