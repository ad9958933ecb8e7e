"""The typed seams: which models can score text, checked by protocol rather than by attribute guessing."""

from __future__ import annotations

from synthloom.llm.base import Model, ScoringModel, can_score
from synthloom.llm.cache import CachedModel, RequestCache
from synthloom.llm.openai_compat import OpenAIModel
from synthloom.llm.scripted import ScriptedModel


def test_scoring_is_a_protocol_the_backends_declare(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    scripted = ScriptedModel(["x"])
    assert isinstance(scripted, Model) and not can_score(scripted)  # chats, cannot score
    plain, scoring = OpenAIModel("http://127.0.0.1:9/v1", "m"), OpenAIModel("http://127.0.0.1:9/v1", "m", score=True)
    assert isinstance(plain, ScoringModel) and not can_score(plain)  # the server path is off unless asked for
    assert can_score(scoring)
    assert can_score(CachedModel(scoring, cache)) and not can_score(CachedModel(scripted, cache))
