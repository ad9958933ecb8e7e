"""In-process vLLM backend (`vllm:MODEL` specs; GPU machines; optional extra `synthloom[vllm]`).

`VLLMModel` keeps the Model contract: one `ChatResponse` per request with `n` choices, per-request
seeds, logprobs with top alternatives, and JSON-schema output through vLLM's guided
(structured-output) decoding. Requests that arrive together are batched into one `LLM.chat` call on
a worker thread, so a pipeline's concurrency becomes vLLM's batch.

The mapping between our requests/responses and vLLM's objects (`sampling_kwargs`,
`to_chat_response`) is plain Python over duck-typed outputs, unit-tested without vLLM.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from synthloom.errors import ConfigError
from synthloom.llm.base import (
    ChatRequest,
    ChatResponse,
    Choice,
    InvalidRequestError,
    ModelError,
    TokenLogprob,
    Usage,
)

MISSING_VLLM = "the vllm backend needs the 'vllm' package on a CUDA machine: pip install 'synthloom[vllm]'"

# Options given to VLLMModel that are ours; every other option goes to vllm.LLM(...).
_OWN_OPTIONS = {"max_batch"}


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise ConfigError(MISSING_VLLM) from None
    return vllm


def sampling_kwargs(request: ChatRequest) -> dict[str, Any]:
    """vLLM SamplingParams fields for a request (guided decoding is attached separately)."""
    request.validate()
    kwargs: dict[str, Any] = {"n": request.n, "temperature": request.temperature, "top_p": request.top_p,
                              "max_tokens": request.max_tokens, "seed": request.seed}
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.logprobs or request.top_logprobs:
        # vLLM's `logprobs=k` returns the sampled token plus the k most likely ones at each step.
        kwargs["logprobs"] = max(0, request.top_logprobs)
    return kwargs


def build_sampling_params(vllm: Any, request: ChatRequest) -> Any:
    """SamplingParams with the JSON schema constraint under whichever name this vLLM uses."""
    kwargs = sampling_kwargs(request)
    # a constrained choice is vLLM's `choice` constraint: the label itself is the whole output
    constraint = ({"json": request.json_schema} if request.json_schema is not None else
                  {"choice": list(request.choice_labels)} if request.choice_labels else None)
    if constraint is not None:
        sampling_params = vllm.sampling_params
        if hasattr(sampling_params, "StructuredOutputsParams"):  # vLLM >= 0.10.2
            kwargs["structured_outputs"] = sampling_params.StructuredOutputsParams(**constraint)
        elif hasattr(sampling_params, "GuidedDecodingParams"):
            kwargs["guided_decoding"] = sampling_params.GuidedDecodingParams(**constraint)
        else:
            raise ConfigError("this vLLM version has no guided decoding; upgrade vllm for constrained output")
    return vllm.SamplingParams(**kwargs)


def _token_logprobs(completion: Any, top_k: int) -> list[TokenLogprob]:
    """Per generated token: its logprob and the top-k alternatives (by vLLM's rank)."""
    out: list[TokenLogprob] = []
    for token_id, candidates in zip(completion.token_ids, completion.logprobs or []):
        chosen = candidates.get(token_id)
        ranked = sorted(candidates.items(), key=lambda kv: (kv[1].rank or 0, -kv[1].logprob))
        top = [(lp.decoded_token or "", float(lp.logprob)) for _, lp in ranked[:top_k]]
        if chosen is None:  # vLLM always includes the sampled token; stay safe if it did not
            out.append(TokenLogprob("", float("nan"), top))
        else:
            out.append(TokenLogprob(chosen.decoded_token or "", float(chosen.logprob), top))
    return out


def to_chat_response(output: Any, request: ChatRequest, model_name: str) -> ChatResponse:
    """Our ChatResponse from a vLLM RequestOutput (n completions, usage, logprobs)."""
    choices = []
    completion_tokens = 0
    for completion in sorted(output.outputs, key=lambda c: c.index):
        completion_tokens += len(completion.token_ids)
        finish = completion.finish_reason if completion.finish_reason in ("stop", "length") else "stop"
        logprobs = _token_logprobs(completion, request.top_logprobs) if request.logprobs or request.top_logprobs else None
        choices.append(Choice(completion.text, finish, logprobs))
    prompt_tokens = len(output.prompt_token_ids or [])
    return ChatResponse(choices, Usage(prompt_tokens, completion_tokens), model_name)


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class _Queue:
    items: list[_Pending] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)


class VLLMModel:
    """A `vllm.LLM` in this process; `options` go to `vllm.LLM` (e.g. tensor_parallel_size=2)."""

    def __init__(self, model: str, **options: Any) -> None:
        if not model:
            raise ConfigError("vllm spec needs a model: vllm:/path/to/model or vllm:org/name")
        self.vllm = import_vllm()
        self.model_name = model
        self.identity = f"vllm:{model}"
        self.max_batch = int(options.get("max_batch", 256))
        llm_options = {k: v for k, v in options.items() if k not in _OWN_OPTIONS}
        try:
            self.llm = self.vllm.LLM(model=model, **llm_options)
        except TypeError as e:
            raise ConfigError(f"bad vllm option for {model}: {e}") from None
        self._queue = _Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="vllm-batcher", daemon=True)
        self._thread.start()

    async def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        if self._closed:
            raise ModelError("vllm model is closed")
        loop = asyncio.get_running_loop()
        futures = []
        for request in requests:
            build_sampling_params(self.vllm, request)  # invalid requests fail here, not in the batch
            fut = loop.create_future()
            with self._queue.lock:
                self._queue.items.append(_Pending(request, fut, loop))
            futures.append(fut)
        self._queue.wake.set()
        return list(await asyncio.gather(*futures))

    def _serve(self) -> None:
        """Worker thread: take whatever is queued (up to max_batch) and run it as one batch."""
        while not self._closed:
            self._queue.wake.wait(0.5)
            with self._queue.lock:
                batch, self._queue.items = self._queue.items[: self.max_batch], self._queue.items[self.max_batch:]
                if not self._queue.items:
                    self._queue.wake.clear()
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            params = [build_sampling_params(self.vllm, p.request) for p in batch]
            outputs = self.llm.chat([p.request.messages for p in batch], params, use_tqdm=False)
            results: list[Any] = [to_chat_response(o, p.request, self.model_name) for o, p in zip(outputs, batch)]
        except ValueError as e:  # vLLM raises ValueError for prompts longer than the context, etc.
            if len(batch) > 1:  # find the culprit: the other requests of the batch still get answers
                for pending in batch:
                    self._run_batch([pending])
                return
            results = [InvalidRequestError(f"vllm rejected the request: {e}")]
        except Exception as e:  # noqa: BLE001 - delivered to every waiting caller
            results = [ModelError(f"vllm generation failed: {type(e).__name__}: {e}")] * len(batch)
        for pending, result in zip(batch, results):
            pending.loop.call_soon_threadsafe(_settle, pending.future, result)

    async def aclose(self) -> None:
        self._closed = True
        self._queue.wake.set()
        await asyncio.to_thread(self._thread.join, 5)


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
