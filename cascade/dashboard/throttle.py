"""Wrong keys per client: after ``limit`` failures in ``window_s`` a client is refused
(429 with ``Retry-After``) until its window ends, whatever key it sends, so a key cannot be
guessed faster than ``limit`` tries a window from one address.

Memory is bounded: at most ``max_clients`` addresses are remembered, the least recently
failed forgotten first, so an attacker with many addresses cannot grow it (each of its
addresses still gets no more than ``limit`` tries a window). Only failures are counted: a
right key is never slowed while its client is under the limit, and opens nothing while the
client is refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """Failed key checks per client address, in fixed windows of ``window_s`` seconds.

    Args:
        limit: failures allowed per window; the next attempt is refused.
        window_s: the window, from a client's first failure in it.
        max_clients: addresses remembered at most (least recently failed dropped first).
        clock: monotonic seconds (for tests).
    """

    def __init__(
        self, *, limit: int = 10, window_s: float = 60.0, max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if limit < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError(
                f"Throttle(limit={limit}, window_s={window_s}, max_clients={max_clients}): "
                "each must be positive"
            )
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # window start, n

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try a key again, or None when it may now."""
        now = self._clock()
        with self._lock:
            entry = self._failures.get(client)
            if entry is None:
                return None
            start, n = entry
            if now - start >= self.window_s:
                del self._failures[client]
                return None
        if n < self.limit:
            return None
        return max(1, math.ceil(start + self.window_s - now))

    def failed(self, client: str) -> None:
        """Count one wrong key from ``client``."""
        now = self._clock()
        with self._lock:
            start, n = self._failures.pop(client, (now, 0))
            if now - start >= self.window_s:
                start, n = now, 0
            self._failures[client] = (start, n + 1)  # now the most recent
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
