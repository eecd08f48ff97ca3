"""Wrong tokens are slowed down, so that guessing one takes far longer than anyone has.

Two limits, both applied as a wait before a token is checked:

* per session: after n wrong tokens in a row, the next check waits first_wait_s * 2**(n-1)
  seconds, at most max_wait_s;
* for the whole server: `burst` checks at once, then one every `interval_s` (a token bucket that
  every session shares), so opening a new session per guess does not help. A check whose turn is
  more than max_wait_s away is refused outright.

The caller waits in its own thread (Streamlit runs each session's script in one), so the server
keeps serving everyone else meanwhile.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    def __init__(self, *, first_wait_s: float = 1.0, max_wait_s: float = 30.0, burst: int = 10,
                 interval_s: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("first_wait_s", first_wait_s), ("max_wait_s", max_wait_s), ("interval_s", interval_s)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
        self.first_wait_s, self.max_wait_s = first_wait_s, max_wait_s
        self.burst, self.interval_s = burst, interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._paid_until = float("-inf")  # when the shared bucket is full again

    def session_wait(self, failures: int) -> float:
        """Seconds a session waits before its next check after `failures` wrong tokens in a row."""
        if failures < 0:
            raise ValueError(f"failures must be >= 0, got {failures!r}")
        return 0.0 if failures == 0 else min(self.max_wait_s, self.first_wait_s * 2.0 ** min(failures - 1, 64))

    def server_turn(self) -> float | None:
        """Reserve the server's next check: seconds until it may run, or None (nothing reserved) when
        that is more than max_wait_s away."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paid_until - (self.burst - 1) * self.interval_s)
            if start - now > self.max_wait_s:
                return None
            self._paid_until = max(self._paid_until, start) + self.interval_s
            return start - now

    def wait_before_check(self, failures: int) -> float | None:
        """Seconds to wait before checking a session's next token (both limits), or None: refuse it
        unchecked, the server is busy with token attempts."""
        turn = self.server_turn()
        return None if turn is None else max(turn, self.session_wait(failures))
