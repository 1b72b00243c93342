"""Deterministic token counts, and the usage objects of the three APIs.

The rule (a word is a whitespace-separated run, ``len(text.split())``):

- prompt (input) tokens: for each item of the conversation (chat message; Responses input item,
  with ``instructions`` as one more item and a string ``input`` as one item) 3 + the words of
  the text it carries (see ``messages.texts``); raised to at least ``Behavior.cached_tokens``
  because cached tokens are part of the prompt;
- completion (output) tokens: the words of each reply text and of each tool call's arguments,
  summed over the ``n`` choices, + ``Behavior.reasoning_tokens`` (reasoning is part of output);
- embeddings: the words of each input string (a token-id array counts its length);
- ``Behavior.prompt_tokens`` / ``Behavior.completion_tokens`` replace the computed values
  (``completion_tokens`` then already includes the reasoning tokens);
- total = prompt + completion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .behavior import Behavior
from .messages import texts

TOKENS_PER_ITEM = 3


def words(text: str | None) -> int:
    """The token count of a text: its number of whitespace-separated words."""
    return len(text.split()) if text else 0


def prompt_words(items: Iterable[Mapping[str, Any]]) -> int:
    """The computed prompt tokens of a conversation (before ``Behavior`` overrides)."""
    return sum(TOKENS_PER_ITEM + sum(words(text) for text in texts(item)) for item in items)


@dataclass(frozen=True)
class TokenCounts:
    """The token counts of one answer, cached inside prompt and reasoning inside completion."""

    prompt: int
    completion: int
    cached: int
    reasoning: int

    @classmethod
    def compute(cls, behavior: Behavior, prompt: int, output: int) -> TokenCounts:
        """Apply the ``Behavior`` to computed ``prompt`` tokens and ``output`` words."""
        if behavior.prompt_tokens is None:
            prompt = max(prompt, behavior.cached_tokens)
        else:
            prompt = behavior.prompt_tokens
        if behavior.completion_tokens is None:
            completion = output + behavior.reasoning_tokens
        else:
            completion = behavior.completion_tokens
        return cls(prompt, completion, behavior.cached_tokens, behavior.reasoning_tokens)

    def chat_usage(self) -> dict[str, Any]:
        """The Chat Completions ``usage`` object."""
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def responses_usage(self) -> dict[str, Any]:
        """The Responses API ``usage`` object."""
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.prompt + self.completion,
        }


def embeddings_usage(behavior: Behavior, inputs: Iterable[str | list[int]]) -> dict[str, int]:
    """The Embeddings ``usage`` object."""
    computed = sum(words(item) if isinstance(item, str) else len(item) for item in inputs)
    prompt = behavior.prompt_tokens if behavior.prompt_tokens is not None else computed
    return {"prompt_tokens": prompt, "total_tokens": prompt}
