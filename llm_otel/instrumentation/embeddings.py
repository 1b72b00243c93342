"""The Embeddings endpoint (``client.embeddings.create``). Vectors are never recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_otel import attributes as attr
from llm_otel.instrumentation.api import given, set_if_given, usage_attributes
from llm_otel.instrumentation.messages import Message, text_part


class EmbeddingsAPI:
    operation = "embeddings"
    api_type = None
    supports_stream_usage = False

    def request_attributes(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        encoding_format = given(kwargs, "encoding_format")
        if encoding_format:
            attributes[attr.REQUEST_ENCODING_FORMATS] = [encoding_format]
        set_if_given(attributes, attr.EMBEDDINGS_DIMENSION_COUNT, given(kwargs, "dimensions"))
        return attributes

    def input_content(self, kwargs: Mapping[str, Any]) -> tuple[list[dict] | None, list[Message]]:
        """Text inputs as one user message per input; token-id inputs are not text and are skipped."""
        value = given(kwargs, "input")
        texts = [value] if isinstance(value, str) else [v for v in value or () if isinstance(v, str)]
        return None, [{"role": "user", "parts": [text_part(text)]} for text in texts]

    def response_attributes(self, result: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        set_if_given(attributes, attr.RESPONSE_MODEL, getattr(result, "model", None))
        usage = getattr(result, "usage", None)
        if usage is not None:
            attributes.update(usage_attributes(usage.prompt_tokens, None))
        data = getattr(result, "data", None)
        if data and isinstance(getattr(data[0], "embedding", None), list):
            attributes[attr.EMBEDDINGS_DIMENSION_COUNT] = len(data[0].embedding)
        return attributes

    def output_messages(self, result: Any) -> None:
        return None  # vectors are not content worth recording

    def new_accumulator(self) -> Any:
        raise TypeError("the embeddings endpoint does not stream")
