"""Fixtures for the instrumentation tests: an instrumented SDK and real clients of the fake server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

from llm_otel.instrumentation import OpenAIInstrumentor
from llm_otel.testing import FakeOpenAI
from tests.llm_otel.spans import API_KEY


@pytest.fixture
def instrument(tracer_provider: TracerProvider) -> Iterator[Callable[..., OpenAIInstrumentor]]:
    """``instrument(**options)`` instruments the SDK for one test; it is undone afterwards."""
    instrumentor = OpenAIInstrumentor()

    def apply(**options: Any) -> OpenAIInstrumentor:
        instrumentor.instrument(tracer_provider=tracer_provider, **options)
        return instrumentor

    yield apply
    instrumentor.uninstrument()


@pytest.fixture
def instrumented(instrument: Callable[..., OpenAIInstrumentor]) -> OpenAIInstrumentor:
    return instrument()


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_openai.base_url, api_key=API_KEY, max_retries=2) as sdk_client:
        yield sdk_client


@pytest.fixture
def async_client(fake_openai: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=API_KEY, max_retries=2)
