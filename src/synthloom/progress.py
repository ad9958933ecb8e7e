"""Live progress for runs: rows per step, model requests, tokens/s, cache hits, ETA.

A Rich live table on a terminal; plain log lines every `interval` seconds when output is not a
TTY (CI, logs), from a timer thread, so a long shard or a global step still shows that work goes on.
The request and token figures come from the executor's live counters (every answered request as it
returns), not from finished shards. SYNTHLOOM_PROGRESS_SECONDS overrides the interval.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


class RunProgress:
    def __init__(self, step_names: list[str], console: Console | None = None, interval: float | None = None,
                 prices: Any = None):
        self.console = console or Console(stderr=True)
        self.steps = step_names
        self.rows_in: dict[str, int] = defaultdict(int)
        self.rows_out: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.requests = 0
        self.cached = 0
        self.tokens = 0
        self.total_rows = 0
        self.t0 = time.perf_counter()
        self.interval = interval if interval is not None else _interval_from_env()
        self._last_log = 0.0
        self._ticker: threading.Thread | None = None
        self._done = threading.Event()
        self.live: Live | None = None
        self.stopping: str | None = None
        self.live_tokens: Any = None  # the executor's LiveTokens (paid tokens, requests in flight)
        self.prices = prices

    def __enter__(self) -> "RunProgress":
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=False,
                             get_renderable=self._table)
            self.live.__enter__()
        else:
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="synthloom-progress")
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join(2)
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def _tick(self) -> None:
        while not self._done.wait(self.interval):
            if self.total_rows or self.live_tokens is not None:  # the run has started
                self._log_line()

    def _log_line(self) -> None:
        self._last_log = time.perf_counter()
        self.console.print(Text(self._line()), highlight=False, soft_wrap=True)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.total_rows = data["rows"]
            self.live_tokens = data.get("live")
        elif kind == "stopping":
            self.stopping = data["reason"]
            self.console.print(Text(f"stopping ({data['reason']}): finishing in-flight work…", style="yellow"))
        elif kind == "part":
            s, name = data["stats"], data["step"]
            self.rows_in[name] += s.get("rows_in", 0)
            self.rows_out[name] += s.get("rows_out", 0)
            self.rejected[name] += sum(s.get("rejected", {}).values())
            for u in s.get("usage", {}).values():
                self.requests += u.get("requests", 0)
                self.cached += u.get("cached_requests", 0)
                self.tokens += u.get("completion_tokens", 0)
        if self.live is not None:
            self.live.update(self._table())
        elif self._ticker is None and time.perf_counter() - self._last_log > self.interval:
            self._log_line()  # used without `with`: no timer thread, print as events come

    def _requests(self) -> tuple[int, int]:
        """(answered, of which cached): counted as each request returns in this process, or from
        finished parts where that is more (resumed parts, executors whose calls run elsewhere)."""
        live = self.live_tokens
        if live is not None and getattr(live, "requests", 0) >= self.requests:
            return live.requests, live.cached
        return self.requests, self.cached

    def _rate(self) -> float:
        return self.tokens / max(1e-6, time.perf_counter() - self.t0)

    def _transport(self) -> str:
        """Retries, status codes and time lost, when any happened (why a run is slow)."""
        live = self.live_tokens
        if live is None or not hasattr(live, "transport"):
            return ""
        t = live.transport()
        if not t["retries"] and not t["statuses"]:
            return ""
        codes = ", ".join(f"{k} {v}" for k, v in sorted(t["statuses"].items()))
        return f"retries {t['retries']} ({codes}), {t['time_lost_s']:.0f}s lost"

    def _eta(self) -> str:
        first = self.steps[1] if len(self.steps) > 1 else None
        done = self.rows_in.get(first, 0) if first else 0
        if not first or not done or not self.total_rows:
            return "?"
        elapsed = time.perf_counter() - self.t0
        return f"{elapsed * (self.total_rows - done) / done:.0f}s"

    def _spend(self) -> str:
        live = self.live_tokens
        if live is None:
            return ""
        first = self.steps[1] if len(self.steps) > 1 else None
        done = self.rows_in.get(first, 0) if first else 0
        frac = done / self.total_rows if self.total_rows and done else 0.0
        cost = live.cost(self.prices)
        text = f"in flight {live.in_flight} | paid {live.total} tok ${cost:.4f}"
        if frac:
            text += f" (projected {live.total / frac:.0f} tok ${cost / frac:.4f})"
        return text

    def _line(self) -> str:
        parts = [f"{n}: {self.rows_out.get(n, 0)}" for n in self.steps[1:]]  # .get: read from the timer thread
        requests, cached = self._requests()
        transport = self._transport()
        return (f"[{time.perf_counter() - self.t0:.0f}s] " + " | ".join(parts) +
                f" | requests {requests} (cached {cached}) | {self._rate():.0f} tok/s | "
                f"{self._spend()}{' | ' + transport if transport else ''} | eta {self._eta()}")

    def _table(self) -> Table:
        requests, cached = self._requests()
        caption = " | ".join(x for x in (self._spend(), self._transport()) if x)
        t = Table(title=f"synthloom run — {time.perf_counter() - self.t0:.0f}s, {self._rate():.0f} tok/s, "
                        f"requests {requests} (cache hits {cached}), ETA {self._eta()}",
                  caption=caption)
        t.add_column("step")
        t.add_column("in", justify="right")
        t.add_column("out", justify="right")
        t.add_column("rejected", justify="right")
        for name in self.steps[1:]:
            t.add_row(name, str(self.rows_in[name]), str(self.rows_out[name]), str(self.rejected[name]))
        return t


def _interval_from_env() -> float:
    try:
        return max(0.05, float(os.environ.get("SYNTHLOOM_PROGRESS_SECONDS", "5")))
    except ValueError:
        return 5.0


def is_tty() -> bool:
    return sys.stderr.isatty()
