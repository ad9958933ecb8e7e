"""Flow control for remote model servers: adaptive concurrency, rate buckets, breaker, backoff.

Each piece is small and independent so the HTTP client composes them and tests can drive them
directly:

- `AIMDLimiter`: how many requests may be in flight. Slow start (double per window) until the
  first overload signal, then additive increase (+1 per window of successes) and multiplicative
  decrease (x0.75) on 429/503. One decrease per window: a burst of 429s answering requests that
  were all sent before the last cut counts once, so the limit does not collapse to the floor.
- `TokenBucket`: requests-per-minute or tokens-per-minute budget; may go into debt so a single
  request larger than the burst capacity still goes through (it just delays the next ones).
- `CircuitBreaker`: per replica; opens after N consecutive hard failures, half-opens after a
  cooldown that doubles while the endpoint stays dead.
- `RetryPolicy`: which outcomes retry and how long to wait (jittered exponential, Retry-After wins).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections import deque
from dataclasses import dataclass


class AIMDLimiter:
    """An asyncio concurrency limit that adapts: additive increase, multiplicative decrease.

    `acquire()` is free (no suspension) while below the limit, which keeps per-request overhead
    low; over the limit callers queue FIFO and `release()` hands its slot to the next one.
    """

    __slots__ = ("max_limit", "min_limit", "decrease_factor", "limit", "in_flight", "epoch",
                 "_slow_start", "_waiters", "overloads", "decreases")

    def __init__(self, max_limit: int, min_limit: int = 1, initial: int | None = None,
                 decrease_factor: float = 0.75) -> None:
        if min_limit < 1 or max_limit < min_limit:
            raise ValueError(f"need 1 <= min_limit <= max_limit, got {min_limit}, {max_limit}")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.decrease_factor = decrease_factor
        start = initial if initial is not None else min(max_limit, max(min_limit, 8))
        self.limit = float(max(min_limit, min(max_limit, start)))
        self.in_flight = 0
        self.epoch = 0  # bumped on every decrease; requests remember the epoch they started in
        self._slow_start = True
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.overloads = 0
        self.decreases = 0

    @property
    def current(self) -> int:
        return int(self.limit)

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to pass back to `on_overload`."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return self.epoch
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us just as we were cancelled
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < int(self.limit):
            fut = waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def on_success(self) -> None:
        if self.limit >= self.max_limit:
            return
        before = int(self.limit)
        # Slow start: +1 per success doubles the limit each window; afterwards +1 per window.
        self.limit = min(float(self.max_limit),
                         self.limit + (1.0 if self._slow_start else 1.0 / self.limit))
        if int(self.limit) > before and self._waiters:
            self._wake()

    def on_overload(self, started_epoch: int) -> None:
        """The server said it is overloaded (429/503) for a request started in `started_epoch`."""
        self.overloads += 1
        if started_epoch < self.epoch:
            return  # this window was already cut
        self._slow_start = False
        self.limit = max(float(self.min_limit), self.limit * self.decrease_factor)
        self.epoch += 1
        self.decreases += 1


class TokenBucket:
    """A per-minute budget (requests or tokens) refilled continuously.

    Capacity is one second of budget (at least 1 unit) so a fresh bucket cannot fire a whole
    minute's worth at once. Acquisition is FIFO; the level may go negative (debt) so a cost larger
    than the capacity is admitted once the bucket is full and then slows the next requests.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"rate must be > 0 per minute, got {per_minute}")
        self._lock = asyncio.Lock()
        self.set_rate(per_minute)
        self.level = self.capacity
        self._last = time.monotonic()
        self._paused_until = 0.0

    def rebind(self) -> None:
        """Use the bucket from a new event loop (asyncio locks belong to one loop)."""
        self._lock = asyncio.Lock()

    def set_rate(self, per_minute: float) -> None:
        self.per_minute = float(per_minute)
        self.rate = self.per_minute / 60.0
        self.capacity = max(1.0, self.rate)

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._last) * self.rate)
        self._last = now

    def pause_until(self, when: float) -> None:
        """The server said the budget is spent until `when` (monotonic seconds)."""
        self._paused_until = max(self._paused_until, when)
        self.level = min(self.level, 0.0)

    def adjust(self, delta: float) -> None:
        """Give back (positive) or take (negative) units after the real cost is known."""
        self.level = min(self.capacity, self.level + delta)

    async def acquire(self, cost: float = 1.0) -> None:
        async with self._lock:
            need = min(cost, self.capacity)
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._refill(now)
                if self.level >= need:
                    self.level -= cost
                    return
                await asyncio.sleep((need - self.level) / self.rate)


class CircuitBreaker:
    """Consecutive-failure breaker for one endpoint: closed -> open -> half-open -> closed."""

    __slots__ = ("threshold", "base_cooldown", "max_cooldown", "failures", "cooldown",
                 "open_until", "probing", "ever_succeeded", "first_failure_at")

    def __init__(self, threshold: int = 5, cooldown: float = 1.0, max_cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.failures = 0
        self.cooldown = cooldown
        self.open_until = 0.0  # 0 = closed
        self.probing = False
        self.ever_succeeded = False
        self.first_failure_at = 0.0  # start of the current run of failures

    @property
    def is_open(self) -> bool:
        return self.open_until > 0.0

    def allows(self, now: float) -> bool:
        """May a request go to this endpoint now? Half-open lets exactly one probe through."""
        if self.open_until == 0.0:
            return True
        if now >= self.open_until and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.cooldown = self.base_cooldown
        self.ever_succeeded = True

    def record_failure(self, now: float) -> None:
        if self.failures == 0:
            self.first_failure_at = now
        self.failures += 1
        if self.probing:  # the probe failed: stay open, wait longer
            self.probing = False
            self.cooldown = min(self.max_cooldown, self.cooldown * 2)
            self.open_until = now + self.cooldown
        elif self.open_until == 0.0 and self.failures >= self.threshold:
            self.open_until = now + self.cooldown

    def release_probe(self) -> None:
        """A probe ended without a verdict about the endpoint (e.g. a 4xx): let another probe in."""
        self.probing = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts and waits. `max_retries` retries means at most max_retries + 1 sends."""

    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1-based)."""
        if retry_after is not None:
            return min(self.max_retry_after, max(0.0, retry_after)) + random.uniform(0, 0.05)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (retry_number - 1)))
        # "Equal jitter": never retry instantly, yet spread a herd of clients apart.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _plain_seconds(value: str) -> float | None:
    """A bare number of seconds (never negative), or None if `value` is not one."""
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    seconds = _plain_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset_duration(value: str | None) -> float | None:
    """x-ratelimit-reset-* values look like '1s', '6m0s', '120ms' or plain seconds."""
    if not value:
        return None
    value = value.strip()
    seconds = _plain_seconds(value)
    if seconds is not None:
        return seconds
    parts = _DURATION_PART.findall(value)
    if not parts:
        return None
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in parts)
