"""At most `limit` events in any `window_s` seconds (a sliding window). Pure: the caller
passes the monotonic time, so the policy is tested without a clock."""

from __future__ import annotations

import collections


class SlidingWindowLimit:
    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def acquire(self, now: float) -> float:
        """Take a slot at `now`: 0.0 when taken, else the seconds until one frees up."""
        if self.allow(now):
            self.add(now)
            return 0.0
        return self._times[0] + self.window_s - now

    def allow(self, now: float) -> bool:
        """Whether a slot is free at `now` (nothing taken: `add` takes it, once the caller
        has decided to)."""
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        return len(self._times) < self.limit

    def add(self, now: float) -> None:
        self._times.append(now)
