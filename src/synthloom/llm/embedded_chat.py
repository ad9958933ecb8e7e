"""Chat prompt rendering from the GGUF's own Jinja chat template (`tokenizer.chat_template`)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from functools import cached_property

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from synthloom.llm.base import InvalidRequestError, Message

# Used only when a GGUF carries no template: ChatML, the most common instruct format.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise InvalidRequestError(f"chat template rejected the messages: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


class ChatTemplate:
    """Renders messages the way Hugging Face tokenizers do (same globals and whitespace rules)."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML_TEMPLATE
        self.bos_token = bos_token
        self.eos_token = eos_token

    @cached_property
    def _template(self) -> jinja2.Template:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            return env.from_string(self.source)
        except jinja2.TemplateError as e:
            raise InvalidRequestError(f"the model's chat template does not parse: {e}") from None

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        try:
            return self._template.render(
                messages=list(messages),
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=add_generation_prompt,
            )
        except InvalidRequestError:
            raise
        except jinja2.TemplateError as e:
            raise InvalidRequestError(f"chat template failed on these messages: {e}") from None
