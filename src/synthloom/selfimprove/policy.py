"""A policy = a causal LM (base or base + LoRA adapter) that answers prompts; batched generation.

Greedy decoding for evaluation, seeded sampling for ReST-EM's E-step. Prompts are sorted by length
before batching (less padding), and padded on the left so every row continues from its last token.
"""

from __future__ import annotations

from typing import Any, Protocol


class Policy(Protocol):
    """Anything that turns user prompts into n completions each (the loop only needs this)."""

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.0,
                 max_new_tokens: int = 48, seed: int = 0) -> list[list[str]]: ...


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """The model's chat format for one user turn, ready for the assistant's answer."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


class HFPolicy:
    """A transformers model (optionally PEFT-wrapped) on CPU."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, name: str = "base") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.name = name

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.0,
                 max_new_tokens: int = 48, seed: int = 0) -> list[list[str]]:
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        texts = [chat_prompt(tok, p) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[list[str]] = [[] for _ in prompts]
        # n samples multiply the batch: keep rows per forward pass near batch_size
        per_batch = max(1, self.batch_size // max(1, n))
        self.model.eval()
        for start in range(0, len(order), per_batch):
            idx = order[start:start + per_batch]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            torch.manual_seed(seed + start)  # deterministic for a given seed and prompt list
            sampling = temperature > 0
            with torch.no_grad():
                out = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=sampling,
                    temperature=temperature if sampling else None, top_p=None, top_k=None,
                    num_return_sequences=n, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            decoded = tok.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                results[i] = [d.strip() for d in decoded[j * n:(j + 1) * n]]
        return results
