"""An app with no llm-otel code at all: ``opentelemetry-instrument`` and llm-otel's distro apply it.

    OTEL_TRACES_EXPORTER=llm_otel_sqlite LLM_OTEL_DB=sqlite:///llm_calls.db \\
        opentelemetry-instrument python examples/zero_code_app.py

The ``llm_otel_openai`` instrumentor entry point wraps the SDK; the ``llm_otel_sqlite`` exporter
writes each finished call to the store (``OTEL_TRACES_EXPORTER=llm_otel_sqlite,otlp`` also sends
the spans to a collector). No OpenAI key? ``llm-otel fake-openai`` prints the two variables that
point the SDK at a local fake server.
"""

import openai

client = openai.OpenAI()
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello in three languages."}], stream=True
)
print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
