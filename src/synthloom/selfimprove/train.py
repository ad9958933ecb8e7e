"""LoRA supervised fine-tuning on CPU (PyTorch + transformers + peft), adapter save and reload.

Every call trains a fresh adapter on a *copy* of the base model, so the base weights never change:
this is what "fine-tune from the base model each iteration" (STaR, ReST-EM) means in practice.
The loss covers only the completion tokens (the prompt is masked with -100).
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthloom.errors import BadInputError
from synthloom.selfimprove.data import Example
from synthloom.selfimprove.policy import HFPolicy, chat_prompt

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
META_FILE = "synthloom_train.json"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(2.0, gt=0, description="passes over the examples (before max_steps)")
    max_steps: int | None = Field(None, ge=1, description="hard cap on optimizer steps")
    min_steps: int = Field(1, ge=1, description="floor on optimizer steps (tiny data sets)")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0, description="peak learning rate (linear warmup, cosine decay)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = 0.0
    max_length: int = Field(192, ge=16, description="tokens per example (prompt + completion)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(TARGET_MODULES))
    top_layers: int | None = Field(None, ge=1, description="adapt only the last N decoder layers: backward "
                                   "then stops there, several times cheaper on CPU")
    seed: int = 0


@dataclass
class TrainResult:
    adapter_dir: str
    steps: int
    examples: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    base_fingerprint: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def weights_fingerprint(model: Any) -> float:
    """A cheap checksum of a model's trainable-by-default weights (to prove the base was not changed)."""
    import torch

    with torch.no_grad():
        return float(sum(p.double().abs().sum().item() for n, p in model.named_parameters() if "lora_" not in n))


def encode_example(tokenizer: Any, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels): prompt in the chat format, labels only on the completion and its end token."""
    prompt_ids = tokenizer(chat_prompt(tokenizer, example.prompt), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(example.completion.strip() + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return ids, labels


def _batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, steps: int, seed: int,
             pad_id: int):
    import torch

    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            extra = list(range(len(encoded)))
            rng.shuffle(extra)
            order.extend(extra)
        chosen, order = order[:batch_size], order[batch_size:]
        width = max(len(encoded[i][0]) for i in chosen)
        ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chosen), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, i in enumerate(chosen):
            x, y = encoded[i]
            ids[row, :len(x)] = torch.tensor(x)
            labels[row, :len(y)] = torch.tensor(y)
            mask[row, :len(x)] = 1
        yield ids, labels, mask


def completion_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Next-token cross-entropy on completion tokens only, projecting just those positions onto the
    vocabulary (49k entries): the prompt's full-vocabulary logits are never computed."""
    import torch

    base = model.get_base_model()
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = base.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def planned_steps(n_examples: int, config: TrainConfig) -> int:
    steps = max(config.min_steps, math.ceil(config.epochs * n_examples / config.batch_size))
    return min(steps, config.max_steps) if config.max_steps else steps


def train_lora(base_model: Any, tokenizer: Any, examples: list[Example], config: TrainConfig,
               out_dir: str | Path, log: Any = None) -> TrainResult:
    """Train a LoRA adapter on a copy of `base_model` and save it (with its metadata) to `out_dir`."""
    import torch
    from peft import LoraConfig, get_peft_model

    if not examples:
        raise BadInputError("no training examples: nothing to fine-tune on")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    fingerprint = weights_fingerprint(base_model)
    n_layers = base_model.config.num_hidden_layers
    layers = list(range(max(0, n_layers - config.top_layers), n_layers)) if config.top_layers else None
    model = get_peft_model(copy.deepcopy(base_model), LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, layers_to_transform=layers, task_type="CAUSAL_LM"))
    model.train()
    encoded = [encode_example(tokenizer, e, config.max_length) for e in examples]
    steps = planned_steps(len(examples), config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = int(steps * config.warmup_ratio)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    losses: list[float] = []
    for step, (ids, labels, mask) in enumerate(_batches(encoded, config.batch_size, steps, config.seed,
                                                        tokenizer.pad_token_id)):
        loss = completion_loss(model, ids, mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss.item()), 4))
        if log and (step % 10 == 0 or step == steps - 1):
            log(f"step {step + 1}/{steps} loss {losses[-1]:.4f}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    result = TrainResult(str(out), steps, len(examples), round(time.perf_counter() - started, 2), losses,
                         fingerprint)
    (out / META_FILE).write_text(json.dumps({"config": config.model_dump(), **result.to_json()}, indent=1))
    return result


def load_adapter(base_model: Any, tokenizer: Any, adapter_dir: str | Path, batch_size: int = 16,
                 merge: bool = True) -> HFPolicy:
    """A policy = a copy of the base model with the saved adapter applied (the base stays untouched).

    merge=True folds the adapter into the copy's weights: generation then costs what the base costs."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise BadInputError(f"{adapter_dir} is not a saved LoRA adapter (no adapter_config.json)")
    model = PeftModel.from_pretrained(copy.deepcopy(base_model), str(adapter_dir))
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return HFPolicy(model, tokenizer, batch_size=batch_size, name=str(adapter_dir))


def read_jsonl_examples(path: str | Path, prompt_field: str = "prompt",
                        completion_field: str = "completion") -> list[Example]:
    """SFT examples from JSONL rows; alpaca (`instruction`/`output`) rows are accepted too."""
    from synthloom.io import read_rows
    from synthloom.selfimprove.data import user_prompt

    rows = read_rows(Path(path))
    out = []
    for i, row in enumerate(rows):
        if row.get(prompt_field):
            prompt = str(row[prompt_field])
        elif row.get("instruction"):
            prompt = str(row["instruction"])
        elif row.get("question"):
            prompt = user_prompt(str(row["question"]))  # same instruction as the evaluation prompt
        else:
            prompt = ""
        completion = row.get(completion_field) or row.get("output") or row.get("response") or row.get("solution")
        if not prompt or not completion:
            raise BadInputError(f"{path} row {i}: needs {prompt_field!r} and {completion_field!r} text "
                                "(or instruction/output, or question/solution)")
        out.append(Example(prompt, str(completion), str(row.get("id", i)), "file"))
    return out
