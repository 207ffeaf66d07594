"""A WebSocket client connection for the engine's thread: no event loop, no second thread.

The live engine reads market data and venue reports in its own thread, between two batches, so
the socket is read there too: :class:`WsConnection` drives the ``websockets`` library's Sans-I/O
protocol (:class:`websockets.client.ClientProtocol`) over a plain non-blocking TCP socket. A
frame goes from the kernel to the strategy without a thread hand-off (the one that costs tens of
microseconds in Python), and the caller decides how long to wait (:meth:`WsConnection.receive`).

Ping frames from the server are answered at once; :meth:`WsConnection.keepalive` sends our own
pings and reports a connection whose pongs stopped coming (a half-open TCP connection looks
alive to the socket until then). Any failure closes the connection and is reported by
:attr:`WsConnection.closed` / :attr:`WsConnection.close_reason`; the feeds and the venue link
reconnect with :class:`Backoff`.

Only ``ws://`` on 127.0.0.1 is tested here (loopback servers); ``wss://`` would wrap the socket
with :mod:`ssl` and is not offered yet.
"""

from __future__ import annotations

import os
import random
import select
import socket
import time
from dataclasses import dataclass

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from ntlab.exceptions import ConfigError, NtlabError

__all__ = ["Backoff", "WsConnection", "WsError"]


class WsError(NtlabError, ConnectionError):
    """A WebSocket connection could not be opened (refused, handshake failed, timed out)."""


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Reconnection delays: ``first`` seconds, times ``factor`` after each failed attempt, at most
    ``cap``; each delay is multiplied by a random factor in ``[1 - jitter, 1]`` so that many
    clients do not come back in step. A successful connection resets it.

    >>> b = Backoff(first=0.1, factor=2.0, cap=0.5, jitter=0.0)
    >>> [b.delay(n) for n in range(5)]
    [0.1, 0.2, 0.4, 0.5, 0.5]
    """

    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        for name in ("first", "cap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ConfigError(f"Backoff {name}={value!r} must be a number of seconds > 0")
        if not (isinstance(self.factor, (int, float)) and self.factor >= 1):
            raise ConfigError(f"Backoff factor={self.factor!r} must be >= 1")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ConfigError(f"Backoff jitter={self.jitter!r} must be in [0, 1)")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (0: the first retry)."""
        base = min(self.cap, self.first * self.factor**failures)
        return base * (1.0 - self.jitter * (rng or random).random()) if self.jitter else base


class WsConnection:
    """One client connection (see the module docstring).

    Parameters
    ----------
    url
        ``ws://host:port/path?query``.
    timeout
        Seconds allowed for the TCP connect and the opening handshake.
    max_size
        Largest message accepted, in bytes (a larger one closes the connection, code 1009).

    Raises
    ------
    WsError
        The server refused, the handshake failed or took longer than ``timeout``.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, max_size: int = 1 << 24) -> None:
        uri = parse_uri(url)
        if uri.secure:
            raise ConfigError(f"{url!r}: wss:// is not supported yet; use a ws:// URL (loopback)")
        self.url = url
        self._proto = ClientProtocol(uri, max_size=max_size)
        self._parts: list[bytes] = []  # fragments of a message in progress
        self.close_reason: str | None = None
        self._ping_sent = 0.0
        self._ping_payload = b""
        self.last_receive = time.monotonic()
        try:
            self._sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        except OSError as exc:
            raise WsError(f"cannot connect to {url}: {exc}") from exc
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake(timeout)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def _handshake(self, timeout: float) -> None:
        proto = self._proto
        proto.send_request(proto.connect())
        self._sock.sendall(b"".join(proto.data_to_send()))
        deadline = time.monotonic() + timeout
        while proto.state is State.CONNECTING:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WsError(f"no opening handshake from {self.url} within {timeout} s")
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue  # the loop's deadline check names it
            except OSError as exc:
                raise WsError(f"opening handshake with {self.url} failed: {exc}") from exc
            if not data:
                proto.receive_eof()
                break
            proto.receive_data(data)
        if proto.state is not State.OPEN:
            raise WsError(f"opening handshake with {self.url} failed: {proto.handshake_exc or 'connection closed'}")
        self._pending = [e.data for e in proto.events_received() if hasattr(e, "opcode") and e.opcode in (Opcode.TEXT, Opcode.BINARY)]

    # -- state --------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def fileno(self) -> int:
        return self._sock.fileno()

    def _lost(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        try:
            self._sock.close()
        except OSError:  # pragma: no cover - closing a dead socket
            pass

    # -- I/O ----------------------------------------------------------------------------------------
    def _flush(self) -> None:
        data = self._proto.data_to_send()
        if not data:
            return
        out = b"".join(data)
        if not out:  # the protocol asks for the write side to be closed
            return
        try:
            try:
                sent = self._sock.send(out)  # an order or a control frame: small, the socket buffer takes it at once
            except BlockingIOError:
                sent = 0
            if sent < len(out):  # the buffer is full: wait for room for the rest
                self._sock.setblocking(True)
                self._sock.sendall(out[sent:])
                self._sock.setblocking(False)
        except OSError as exc:
            self._lost(f"send failed: {exc}")

    def send_text(self, text: str | bytes) -> bool:
        """Send one text message; False when the connection is closed (the caller resends later)."""
        if self.closed:
            return False
        try:
            self._proto.send_text(text.encode() if isinstance(text, str) else text)
        except Exception as exc:  # noqa: BLE001  # the protocol refuses: the connection is closing
            self._lost(f"send refused: {exc}")
            return False
        self._flush()
        return not self.closed

    def receive(self, wait: float = 0.0, *, spin: bool = False) -> list[bytes]:
        """Messages that have arrived (text or binary payloads), waiting up to ``wait`` seconds for
        the first (in ``select``, or polling in a busy loop with ``spin``); ``[]`` when none came.
        After a failure, ``[]`` and :attr:`closed` is True."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        if self.closed:
            return []
        sock = self._sock
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            if wait <= 0:
                return []
            if spin:
                deadline = time.perf_counter() + wait
                while time.perf_counter() < deadline:
                    try:
                        data = sock.recv(1 << 20)
                        break
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._lost(f"connection lost: {exc}")
                        return []
                else:
                    return []
                return self._received(data)
            try:
                ready, _, _ = select.select([sock], [], [], wait)
            except (OSError, ValueError) as exc:  # pragma: no cover - the socket vanished
                self._lost(f"select failed: {exc}")
                return []
            if not ready:
                return []
            return self.receive(0.0)
        except OSError as exc:
            self._lost(f"connection lost: {exc}")
            return []
        return self._received(data)

    def _received(self, data: bytes) -> list[bytes]:
        sock, proto = self._sock, self._proto
        eof = not data
        if eof:
            proto.receive_eof()
        else:
            proto.receive_data(data)
            for _ in range(3):  # take what else is already there (bounded: a fast sender never keeps us here)
                try:
                    more = sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._lost(f"connection lost: {exc}")
                    break
                if not more:
                    eof = True
                    proto.receive_eof()
                    break
                proto.receive_data(more)
        self.last_receive = time.monotonic()
        out: list[bytes] = []
        for ev in proto.events_received():
            op = ev.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if ev.fin:
                    out.append(ev.data)
                else:
                    self._parts = [ev.data]
            elif op is Opcode.CONT:
                self._parts.append(ev.data)
                if ev.fin:
                    out.append(b"".join(self._parts))
                    self._parts = []
            elif op is Opcode.PONG and ev.data == self._ping_payload:
                self._ping_sent = 0.0
        self._flush()  # pongs, close frames
        if proto.state is State.CLOSED or eof:
            code = proto.close_code
            self._lost(f"closed by the server (code {code})" if code not in (None, 1006) else "connection lost (no close frame)")
        return out

    def keepalive(self, interval: float, timeout: float) -> bool:
        """Send a ping when ``interval`` seconds passed without one; False (and the connection is
        closed) when the last ping got no pong within ``timeout`` seconds."""
        if self.closed:
            return False
        now = time.monotonic()
        if self._ping_sent and now - self._ping_sent > timeout:
            self._lost(f"no pong within {timeout} s")
            return False
        if not self._ping_sent and now - self.last_receive > interval:
            self._ping_payload = os.urandom(4)
            self._ping_sent = now
            self._proto.send_ping(self._ping_payload)
            self._flush()
        return not self.closed

    def close(self) -> None:
        """Send a close frame (best effort) and close the socket."""
        if self.closed:
            return
        try:
            self._proto.send_close(1000)
            self._flush()
        except Exception:  # noqa: BLE001,S110  # already failing: just drop it
            pass
        self._lost("closed by us")

    def __repr__(self) -> str:
        return f"WsConnection({self.url!r}, {'closed: ' + self.close_reason if self.closed else 'open'})"
