"""SIGTERM / SIGINT as a request to stop training cleanly after the current step."""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["StopRequests"]

log = logging.getLogger(__name__)


class StopRequests:
    """Context manager: while active, SIGTERM and SIGINT set `received` (the signal's name) instead of
    killing the process; a second SIGINT raises KeyboardInterrupt at once. Previous handlers come back
    on exit. Outside the main thread (where Python cannot install handlers) it watches nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        log.warning("%s received: stopping after this step with a checkpoint (continue with --resume)",
                    self.received)

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
