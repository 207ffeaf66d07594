"""Serving in the foreground: block while a server's loop thread runs, stop it on Ctrl-C or
SIGTERM (``kill``, a process manager, :class:`ntlab.live.headless.ServerProcess`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def block_until_interrupted(thread: threading.Thread, stop: Callable[[], None]) -> None:
    """Wait for ``thread`` to end; on KeyboardInterrupt, or SIGTERM when called from the main
    thread (where it is turned into KeyboardInterrupt for the wait), return quietly. ``stop``
    runs in every case and the previous SIGTERM handler is restored."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        stop()
