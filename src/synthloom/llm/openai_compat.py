"""Async client for any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, Ollama, OpenAI).

One aiohttp session per event loop (keep-alive, shared by all requests; aiohttp rather than httpx
because it sustains several times the request rate at high concurrency: see docs/models.md and
benchmarks/bench_client.py). Around each request:

    token buckets (RPM/TPM) -> AIMD concurrency slot -> least-loaded healthy replica -> POST
    -> classify the outcome -> success | retry with backoff | fail with a one-line reason

Structured output uses `response_format: json_schema` while the server accepts it and falls back
to prompt + parse + repair when it does not (learned from the first 400 that says so). `n > 1` is
sent to the server and emulated with separate seeded requests where the server ignores or rejects
it. The API key lives only in the request headers: never in identity, logs, errors or the cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from synthloom.errors import ConfigError
from synthloom.llm.base import (
    ChatRequest,
    ChatResponse,
    Choice,
    InvalidRequestError,
    ModelError,
    TextScore,
    TokenLogprob,
    Usage,
)
from synthloom.llm.constrained import as_lone_label_request, label_schema
from synthloom.llm.ratelimit import (
    AIMDLimiter,
    CircuitBreaker,
    RetryPolicy,
    TokenBucket,
    parse_reset_duration,
    parse_retry_after,
)
from synthloom.llm.structured import check_schema, complete_structured

log = logging.getLogger("synthloom.llm.openai")

_OVERLOAD = (429, 503)
_AUTH = (401, 403)
_RETRY_4XX = (408, 409)  # request timeout / conflict: transient by definition
_SCHEMA_HINTS = re.compile(r"response_format|json_schema|schema|not supported|unsupported|"
                           r"unrecognized|unknown|extra", re.I)
_N_HINT = re.compile(r"(?<![\w-])'?n'?(?![\w-])|\bn must\b|multiple (choices|completions)", re.I)
# A 400/422 that names the model as unknown is about the endpoint (vLLM and Ollama say 404, others
# 400): every request would get it, so it ends the run instead of rejecting rows one by one.
_UNKNOWN_MODEL = re.compile(r"\bmodel\b[^.;]{0,80}?\b(not found|does not exist|not exist|unknown|invalid|"
                            r"not available)\b|\b(unknown|invalid|nonexistent|no such) model\b|model_not_found",
                            re.I)


class EndpointError(ModelError):
    """The endpoint itself is wrong (no such URL or model, refused key, nothing listening): a run
    error, never a row rejection, and never cached, so a re-run with a fixed spec just works."""

    def __init__(self, message: str, status: int = 0, server_message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class AuthenticationError(EndpointError):
    """The server refused the API key (401/403). Fix: set a valid key in the named env var."""


class EndpointUnreachableError(EndpointError):
    """Every replica's circuit breaker is open: the server is down or the URL is wrong."""


class ServerRejectedError(InvalidRequestError):
    """A 4xx that retrying cannot fix; `server_message` is the server's (redacted) explanation."""

    def __init__(self, message: str, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


@dataclasses.dataclass(slots=True, eq=False)
class Replica:
    base_url: str
    url: str  # chat completions
    breaker: CircuitBreaker
    outstanding: int = 0
    sent: int = 0
    last_failure: str = ""


@dataclasses.dataclass(slots=True)
class ClientStats:
    attempts: int = 0  # HTTP sends, including retries
    retries: int = 0
    overloaded: int = 0  # 429/503 answers
    timeouts: int = 0
    connection_errors: int = 0
    server_errors: int = 0  # other 5xx
    malformed: int = 0  # 200 with a body that is not a chat completion
    rejected: int = 0  # 4xx answers that end the request (bad request, wrong endpoint)
    time_lost_s: float = 0.0  # seconds spent on failed attempts and backoff waits
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)  # "429", "500", "timeout", ...

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["time_lost_s"] = round(self.time_lost_s, 3)
        return d


def derive_seed(seed: int | None, sample_index: int) -> int | None:
    """A distinct, reproducible seed per emulated sample; sample 0 keeps the request's seed."""
    if seed is None or sample_index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class OpenAIModel:
    """The Model protocol over one or more OpenAI-compatible base URLs (replicas of one model)."""

    def __init__(
        self,
        base_urls: list[str] | str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 64,
        min_concurrency: int = 1,
        rpm: float | None = None,
        tpm: float | None = None,
        timeout: float = 120.0,
        max_retries: int = 6,
        supports_json_schema: bool | None = None,
        supports_n: bool | None = None,
        *,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        outage_grace: float = 60.0,
        repair_rounds: int = 2,
        score: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(
                f"unknown option(s) for the openai backend: {', '.join(sorted(unknown))}; valid: "
                "api_key_env, max_concurrency, min_concurrency, rpm, tpm, timeout, max_retries, "
                "supports_json_schema, supports_n, connect_timeout, backoff_base, backoff_max, "
                "breaker_threshold, breaker_cooldown, outage_grace, repair_rounds, score")
        urls = [u.strip() for u in (base_urls.split(",") if isinstance(base_urls, str) else base_urls)]
        urls = [u.rstrip("/") for u in urls if u]
        if not urls:
            raise ConfigError("the openai backend needs at least one base URL, e.g. http://host:8000/v1")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ConfigError(f"base URL {u!r} must start with http:// or https://")
        if not model:
            raise ConfigError("the openai backend needs a model name: openai:http://host:8000/v1#name")
        try:
            max_concurrency, min_concurrency = int(max_concurrency), int(min_concurrency)
            max_retries, breaker_threshold = int(max_retries), int(breaker_threshold)
            timeout, connect_timeout = float(timeout), float(connect_timeout)
            rpm = None if rpm is None else float(rpm)
            tpm = None if tpm is None else float(tpm)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad numeric option for the openai backend: {e}") from None
        if not 1 <= min_concurrency <= max_concurrency:
            raise ConfigError(f"need 1 <= min_concurrency ({min_concurrency}) <= max_concurrency "
                              f"({max_concurrency})")
        if timeout <= 0 or max_retries < 0 or breaker_threshold < 1:
            raise ConfigError("timeout must be > 0, max_retries >= 0, breaker_threshold >= 1")
        if (rpm is not None and rpm <= 0) or (tpm is not None and tpm <= 0):
            raise ConfigError("rpm and tpm must be > 0 when set")

        self.model = model
        self.identity = f"openai:{model}"  # URL-free: replicas and moved servers share the cache
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.supports_json_schema = supports_json_schema
        self.supports_n = supports_n
        # opt-in: scoring needs POST /completions with echo + logprobs (vLLM, `synthloom serve`)
        self.can_score = bool(score)
        self.repair_rounds = int(repair_rounds)
        self.outage_grace = float(outage_grace)
        self.retry = RetryPolicy(max_retries, float(backoff_base), float(backoff_max))
        self.limiter = AIMDLimiter(max_concurrency, min_concurrency)
        self.replicas = [
            Replica(u, f"{u}/chat/completions",
                    CircuitBreaker(breaker_threshold, float(breaker_cooldown)))
            for u in urls
        ]
        self._configured_rpm, self._configured_tpm = rpm, tpm
        self.rpm_bucket = TokenBucket(rpm) if rpm else None
        self.tpm_bucket = TokenBucket(tpm) if tpm else None
        self.stats = ClientStats()
        self._fatal: EndpointError | None = None  # set by the first wrong-endpoint answer

        key = os.environ.get(api_key_env) if api_key_env else None
        self._secret = key or None
        self._headers = {"Content-Type": "application/json"}
        if self._secret:
            self._headers["Authorization"] = f"Bearer {self._secret}"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAIModel({[r.base_url for r in self.replicas]!r}, model={self.model!r})"

    # ------------------------------------------------------------------ public API

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        for r in requests:
            r.validate()
        self._bind_loop()
        if len(requests) == 1:
            return [await self._complete(requests[0])]
        tasks = [asyncio.ensure_future(self._complete(r)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:  # one failed for good: don't leave the rest running unobserved
                t.cancel()
            raise

    async def score(self, texts: Sequence[str], prefixes: Sequence[str] | None = None) -> list[TextScore]:
        """Token log-probabilities of each text after its prefix, from the server's legacy
        completions endpoint (`echo` + `logprobs`, one generated token that is discarded). The
        server tokenises prefix + text together. Needs the `score=true` option."""
        if not self.can_score:
            raise ConfigError(
                f"{self.identity} is not set up to score text; if the server answers POST /completions "
                "with echo and logprobs (vLLM, synthloom serve), add ?score=true to the model spec"
            )
        prefixes = list(prefixes) if prefixes is not None else [""] * len(texts)
        if len(prefixes) != len(texts):
            raise InvalidRequestError(f"{len(texts)} texts but {len(prefixes)} prefixes")
        self._bind_loop()
        return list(await asyncio.gather(*(self._score_one(t, p) for t, p in zip(texts, prefixes))))

    async def _score_one(self, text: str, prefix: str) -> TextScore:
        if not text:
            raise InvalidRequestError("cannot score an empty text (it has no tokens to score)")
        prompt = prefix + text
        payload = json.dumps({"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                              "echo": True, "logprobs": 0}, ensure_ascii=False).encode()
        try:
            data = await self._post(payload, len(prompt) // 4 + 1, completions=True)
        except (ServerRejectedError, EndpointError) as e:
            if e.status in (404, 405, 501):
                raise ConfigError(f"{self.identity}: the server cannot score text ({e.server_message}); "
                                  "drop ?score=true") from None
            raise
        try:
            lp = data["choices"][0]["logprobs"]
            rows = zip(lp["tokens"], lp["token_logprobs"], lp["text_offset"])
            # the text's tokens: those ending inside it (one may start in the prefix: the server
            # tokenises prefix + text together) and starting before the generated token
            tokens = [TokenLogprob(str(t), float(v)) for t, v, off in rows
                      if v is not None and int(off) + len(str(t)) > len(prefix) and int(off) < len(prompt)]
        except (KeyError, TypeError, ValueError, IndexError):
            raise ModelError(f"{self.identity}: the completions answer has no prompt logprobs "
                             "(echo with logprobs unsupported?)") from None
        if not tokens:
            raise ModelError(f"{self.identity}: the server returned no log-probabilities for the text")
        return TextScore(tokens)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # ------------------------------------------------------------------ per request

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        if request.choice_labels:
            return await self._complete_choice(request)
        if request.json_schema is not None:
            return await self._complete_structured(request)
        return await self._complete_plain(request)

    async def _complete_choice(self, request: ChatRequest) -> ChatResponse:
        """A constrained choice: the labels as a JSON-schema enum while the server takes schemas,
        else a lone-label prompt (read strictly by llm.constrained.read_choice, never repaired)."""
        labels = list(request.choice_labels or [])
        if self.supports_json_schema is not False:
            native = dataclasses.replace(request, choice_labels=None, json_schema=label_schema(labels))
            try:
                return await self._complete_plain(native)
            except ServerRejectedError as e:
                # (a concurrent request may have learned the answer meanwhile: only a known-good server raises)
                if self.supports_json_schema is True or not _SCHEMA_HINTS.search(e.server_message):
                    raise
                self._learn("supports_json_schema", False, e.server_message)
        return await self._complete_plain(as_lone_label_request(request))

    async def _complete_plain(self, request: ChatRequest) -> ChatResponse:
        n = request.n
        if n > 1 and self.supports_n is False:
            return await self._emulate_n(request, range(n))
        try:
            response = await self._call(request)
        except ServerRejectedError as e:
            if n > 1 and self.supports_n is None and _N_HINT.search(e.server_message):
                self._learn("supports_n", False, e.server_message)
                return await self._emulate_n(request, range(n))
            raise
        got = len(response.choices)
        if n > 1 and got < n:
            # The server ignored n (llama.cpp-style): fetch the missing samples separately.
            if self.supports_n is None:
                self._learn("supports_n", False, f"asked n={n}, got {got} choices")
            rest = await self._emulate_n(request, range(got, n))
            response.choices.extend(rest.choices)
            response.usage.add(rest.usage)
        elif n > 1 and self.supports_n is None:
            self.supports_n = True
        return response

    async def _emulate_n(self, request: ChatRequest, indices: range) -> ChatResponse:
        singles = [dataclasses.replace(request, n=1, seed=derive_seed(request.seed, i))
                   for i in indices]
        responses = await asyncio.gather(*(self._call(s) for s in singles))
        usage = Usage()
        for r in responses:
            usage.add(r.usage)
        choices = [c for r in responses for c in r.choices[:1]]
        return ChatResponse(choices, usage, responses[0].model if responses else self.model)

    async def _complete_structured(self, request: ChatRequest) -> ChatResponse:
        schema = request.json_schema
        assert schema is not None
        check_schema(schema)

        async def send(r: ChatRequest) -> ChatResponse:
            return await self._complete_plain(r)

        if self.supports_json_schema is not False:
            try:
                response, _ = await complete_structured(send, request, schema, self.repair_rounds,
                                                        native=True)
                return response
            except ServerRejectedError as e:
                if self.supports_json_schema is not None or not _SCHEMA_HINTS.search(e.server_message):
                    raise
                self._learn("supports_json_schema", False, e.server_message)
        response, _ = await complete_structured(send, request, schema, self.repair_rounds,
                                                native=False)
        return response

    def _learn(self, capability: str, value: bool, evidence: str) -> None:
        if getattr(self, capability) is None:
            setattr(self, capability, value)
            log.warning("%s: %s=%s (server said: %s); emulating it client-side",
                        self.identity, capability, value, evidence[:160])

    async def _call(self, request: ChatRequest) -> ChatResponse:
        payload = self._payload(request)
        estimate = 0
        if self.tpm_bucket is not None:
            estimate = sum(len(m["content"]) for m in request.messages) // 4 \
                + request.max_tokens * request.n
        data = await self._post(payload, estimate)
        try:
            response = _parse_completion(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            # _post already checked the shape; this is a deeper oddity (e.g. a non-numeric logprob)
            raise ModelError(f"{self.identity}: server returned a malformed chat completion") from None
        if self.tpm_bucket is not None:
            self.tpm_bucket.adjust(estimate - response.usage.total_tokens)
        return response

    def _payload(self, r: ChatRequest) -> bytes:
        p: dict[str, Any] = {"model": self.model, "messages": r.messages,
                             "max_tokens": r.max_tokens, "temperature": r.temperature,
                             "top_p": r.top_p}
        if r.n != 1:
            p["n"] = r.n
        if r.stop:
            p["stop"] = r.stop
        if r.seed is not None:
            p["seed"] = r.seed
        if r.logprobs:
            p["logprobs"] = True
            if r.top_logprobs:
                p["top_logprobs"] = r.top_logprobs
        if r.json_schema is not None:
            p["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": "output", "schema": r.json_schema}}
        return json.dumps(p, ensure_ascii=False).encode()

    # ------------------------------------------------------------------ transport + policy

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is loop and not self._session.closed:
            return
        if self._session is not None and not self._session.closed:
            self._session.detach()  # belongs to a finished loop (chat_sync): drop it
        self._loop = loop
        connector = aiohttp.TCPConnector(limit=self.limiter.max_limit + 8, limit_per_host=0,
                                         ttl_dns_cache=300, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.connect_timeout),
        )
        for bucket in (self.rpm_bucket, self.tpm_bucket):
            if bucket is not None:
                bucket.rebind()

    async def _post(self, payload: bytes, token_estimate: int, completions: bool = False) -> dict[str, Any]:
        """Send until answered or the retry policy says stop; returns the completion JSON.
        `completions`: the legacy /completions endpoint instead of /chat/completions."""
        session = self._session
        assert session is not None
        limiter, stats = self.limiter, self.stats
        attempt = 0
        avoid: Replica | None = None
        while True:
            if self.rpm_bucket is not None:
                await self.rpm_bucket.acquire(1)
            if self.tpm_bucket is not None:
                await self.tpm_bucket.acquire(token_estimate)
            epoch = await limiter.acquire()
            replica = self._pick(avoid)
            if isinstance(replica, float):  # every replica cooling down: wait, don't hammer
                limiter.release()
                if self.rpm_bucket is not None:
                    self.rpm_bucket.adjust(1)  # nothing was sent: give the budget back
                if self.tpm_bucket is not None:
                    self.tpm_bucket.adjust(token_estimate)
                await asyncio.sleep(replica)
                continue
            if self._fatal is not None and not completions:
                limiter.release()  # the endpoint is known wrong: fail fast, send nothing more
                fatal = self._fatal
                raise type(fatal)(str(fatal), fatal.status, fatal.server_message)
            replica.outstanding += 1
            replica.sent += 1
            stats.attempts += 1
            status, body, retry_after = 0, b"", None
            sent_at = time.monotonic()
            try:
                url = f"{replica.base_url}/completions" if completions else replica.url
                async with session.post(url, data=payload) as resp:
                    status = resp.status
                    body = await resp.read()
                    headers = resp.headers
                    if "x-ratelimit-limit-requests" in headers or "x-ratelimit-limit-tokens" in headers:
                        self._apply_rate_headers(headers)
                    if status != 200:
                        retry_after = parse_retry_after(headers.get("Retry-After"))
            except TimeoutError:
                status, failure = -1, f"timed out after {self.timeout:g}s"
                stats.timeouts += 1
            except aiohttp.InvalidURL:
                raise ConfigError(f"invalid base URL {replica.base_url!r}") from None
            except (aiohttp.ClientError, OSError) as e:
                status, failure = -2, f"connection error ({_describe(e)})"
                stats.connection_errors += 1
            finally:
                replica.outstanding -= 1
                limiter.release()

            if status == 200:
                data = _loads_completion(body)
                if data is not None:
                    limiter.on_success()
                    replica.breaker.record_success()
                    return data
                stats.malformed += 1
                replica.breaker.release_probe()
                failure = "malformed response (not a JSON chat completion)"
            elif status in _OVERLOAD:
                stats.overloaded += 1
                limiter.on_overload(epoch)
                replica.breaker.record_success()  # busy, but alive
                failure = f"HTTP {status} (server overloaded or rate limited)"
            elif status in _AUTH:
                replica.breaker.record_success()
                stats.rejected += 1
                stats.count(str(status))
                raise self._endpoint_failed(self._auth_error(status, replica), completions)
            elif 400 <= status < 500 and status not in _RETRY_4XX:
                replica.breaker.record_success()
                stats.rejected += 1
                stats.count(str(status))
                raise self._endpoint_failed(self._rejected(status, body, replica), completions)
            elif status > 0:
                stats.server_errors += 1
                if status >= 500:
                    replica.breaker.record_failure(time.monotonic())
                else:
                    replica.breaker.release_probe()
                failure = f"HTTP {status}: {self._server_message(body)}"
            else:
                replica.breaker.record_failure(time.monotonic())
                # a replica that worked went down (a URL that never answered gets its one-line error)
                if replica.breaker.is_open and replica.breaker.failures == replica.breaker.threshold \
                        and replica.breaker.ever_succeeded:
                    log.warning("circuit open for %s after %d consecutive failures (%s)",
                                replica.base_url, replica.breaker.failures, failure)
            replica.last_failure = failure
            if status > 0:
                stats.count("malformed" if status == 200 else str(status))
            else:
                stats.count("timeout" if status == -1 else "connection_error")
            stats.time_lost_s += time.monotonic() - sent_at

            attempt += 1
            if attempt > self.retry.max_retries:
                raise ModelError(f"{self.identity}: request failed after {attempt} attempts; "
                                 f"last: {failure} at {replica.base_url}")
            stats.retries += 1
            if status < 0 and len(self.replicas) > 1:
                avoid = replica  # fail over to another replica right away
                continue
            wait = self.retry.delay(attempt, retry_after)
            stats.time_lost_s += wait
            await asyncio.sleep(wait)

    def _endpoint_failed(self, error: ModelError, completions: bool) -> ModelError:
        """Remember an endpoint error of the chat endpoint: every later request fails with it at once."""
        if isinstance(error, EndpointError) and not completions and self._fatal is None:
            self._fatal = error
        return error

    def _pick(self, avoid: Replica | None) -> Replica | float:
        """The healthy replica with the fewest outstanding requests, or seconds to wait."""
        replicas = self.replicas
        if len(replicas) == 1 and replicas[0].breaker.open_until == 0.0:
            return replicas[0]
        best: Replica | None = None
        for r in replicas:
            if r.breaker.open_until == 0.0 and r is not avoid:
                if best is None or r.outstanding < best.outstanding:
                    best = r
        if best is not None:
            return best
        if avoid is not None and avoid.breaker.open_until == 0.0:
            return avoid
        now = time.monotonic()
        for r in replicas:
            if r.breaker.allows(now):  # half-open: this request is the probe
                return r
        # Every replica is open. A URL that never answered is wrong or down: say so now. One that
        # worked before gets `outage_grace` seconds to come back (a server restart) before we fail.
        dead = [r for r in replicas if not r.breaker.ever_succeeded
                or now - r.breaker.first_failure_at > self.outage_grace]
        if len(dead) == len(replicas):
            r = replicas[0] if len(replicas) == 1 else max(replicas, key=lambda x: x.breaker.failures)
            names = ", ".join(x.base_url for x in replicas)
            raise EndpointUnreachableError(
                f"endpoint {names} unreachable ({r.breaker.failures} consecutive failures, last: "
                f"{r.last_failure or 'unknown'}): check the server / URL")
        wake = min(r.breaker.open_until for r in replicas)
        return max(0.01, wake - now)

    def _apply_rate_headers(self, headers: Any) -> None:
        """Adopt limits the server announces (OpenAI-style x-ratelimit-* headers)."""
        now = time.monotonic()
        for kind, configured in (("requests", self._configured_rpm), ("tokens", self._configured_tpm)):
            try:
                limit = float(headers.get(f"x-ratelimit-limit-{kind}") or 0)
                remaining = headers.get(f"x-ratelimit-remaining-{kind}")
                remaining_f = None if remaining is None else float(remaining)
            except ValueError:
                continue
            attr = "rpm_bucket" if kind == "requests" else "tpm_bucket"
            bucket: TokenBucket | None = getattr(self, attr)
            if limit > 0:
                rate = min(limit, configured) if configured else limit
                if bucket is None:
                    bucket = TokenBucket(rate)
                    setattr(self, attr, bucket)
                elif bucket.per_minute != rate:
                    bucket.set_rate(rate)
            if bucket is not None and remaining_f is not None and remaining_f <= 0:
                reset = parse_reset_duration(headers.get(f"x-ratelimit-reset-{kind}"))
                if reset:
                    bucket.pause_until(now + reset)

    def _redact(self, text: str) -> str:
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "***")
        return text

    def _server_message(self, body: bytes) -> str:
        text = body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
            err = data.get("error", data) if isinstance(data, dict) else data
            if isinstance(err, dict):
                text = str(err.get("message") or err.get("detail") or err)
            elif isinstance(err, str):
                text = err
        except ValueError:
            pass
        text = " ".join(self._redact(text).split())
        return text[:300] + ("..." if len(text) > 300 else "") or "(empty body)"

    def _auth_error(self, status: int, replica: Replica) -> AuthenticationError:
        if not self.api_key_env:
            fix = "configure api_key_env with the name of the variable that holds the key"
        elif self._secret is None:
            fix = f"${self.api_key_env} is not set; export your API key in it"
        else:
            fix = f"the key in ${self.api_key_env} was refused; set a valid key"
        what = "authentication failed" if status == 401 else "access denied"
        return AuthenticationError(f"{what} at {replica.base_url} (HTTP {status}): {fix}", status)

    def _rejected(self, status: int, body: bytes, replica: Replica) -> ServerRejectedError | EndpointError:
        """A 4xx that retrying cannot fix: about this request (the row is rejected) or about the
        endpoint (404 = wrong URL or model; a 400 naming the model as unknown): the run stops."""
        message = self._server_message(body)
        if status == 404 or (status in (400, 422) and _UNKNOWN_MODEL.search(message)):
            return EndpointError(
                f"{replica.base_url} answered HTTP {status} for model {self.model!r}: {message} (check the "
                "base URL, usually ending in /v1, and the model name after '#')", status, message)
        return ServerRejectedError(
            f"{replica.base_url} rejected the request (HTTP {status}): {message}", status, message)


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())[:160]


def _loads_completion(body: bytes) -> dict[str, Any] | None:
    """The parsed body when it looks like a chat completion, else None (treated as transient)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        return None
    return data


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _parse_logprobs(lp: Any) -> list[TokenLogprob] | None:
    if not isinstance(lp, dict) or not isinstance(lp.get("content"), list):
        return None
    return [
        TokenLogprob(t["token"], float(t["logprob"]),
                     [(a["token"], float(a["logprob"])) for a in t.get("top_logprobs") or ()])
        for t in lp["content"]
    ]


def _parse_completion(data: dict[str, Any]) -> ChatResponse:
    raw = data["choices"]
    if len(raw) > 1 and all(isinstance(c, dict) and "index" in c for c in raw):
        raw = sorted(raw, key=lambda c: c["index"])
    choices = []
    for c in raw:
        message = c.get("message") or {}
        choices.append(Choice(_content_text(message.get("content")),
                              c.get("finish_reason") or "stop",
                              _parse_logprobs(c.get("logprobs"))))
    usage = data.get("usage") or {}
    return ChatResponse(choices,
                        Usage(int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0)),
                        str(data.get("model") or ""))
