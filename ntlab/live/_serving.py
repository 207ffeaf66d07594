"""What the replay and venue servers share: a server whose asyncio loop runs in a thread of its
own, used as a context manager or served in the foreground until Ctrl-C or SIGTERM (``kill``,
a process manager, :class:`ntlab.live.headless.ServerProcess`)."""

from __future__ import annotations

import signal
import threading
from typing import Self


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class ThreadedServer:
    """A subclass provides :meth:`start` (start the loop thread as ``self._thread``, return once
    listening) and :meth:`stop` (idempotent)."""

    _thread: threading.Thread | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def serve_forever(self) -> None:
        """Start (if needed) and block until the server stops, KeyboardInterrupt or SIGTERM (from
        the main thread, SIGTERM is turned into KeyboardInterrupt for the wait); then stop, and
        put the previous SIGTERM handler back."""
        self.start()
        assert self._thread is not None
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
        try:
            while self._thread.is_alive():
                self._thread.join(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
