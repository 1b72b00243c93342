"""The shipped secret redactor: real-looking secrets are masked, ordinary text is left alone, and
with ``setup(redact=redact_secrets)`` no secret reaches the span or the store."""

from __future__ import annotations

import json
import sqlite3

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llm_otel
from llm_otel import attributes as attr
from llm_otel.testing import Behavior, FakeOpenAI
from tests.llm_otel.spans import API_KEY

# Real-looking samples (random characters in each provider's published shape; none is a live key).
SECRETS = {
    "openai_key": [
        "sk-proj-4fQm9XcT2bLr8WzK1nVy6HdJ3sPaE0uGtRiOkMl7NqBwYxZc5_AbCdEfGh-IjKlMnOpQrStUvWxYz0123456789",
        "sk-Zq7yT1mB4xV9cK2nL8wR5pH3jD6fG0sAe1uIoP9lKjHgFdSa",
        "sk-svcacct-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78",
    ],
    "anthropic_key": [
        "sk-ant-api03-Xy9zW8vU7tS6rQ5pO4nM3lK2jI1hG0fE9dC8bA7zY6xW5vU4tS3rQ2pO1nM0lK-AbCdEfGhIj"
    ],
    "google_api_key": ["AIzaSyD4x9Q2mB7nV1cX8zL3kJ6hG5fD0sA9pOiU"],
    "aws_access_key_id": ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
    "aws_secret_access_key": ["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    "github_token": ["ghp_16C7e42F292c6912E7710c838347Ae178B4a", "github_pat_" + "11ABCDEFG0" * 7],
    "slack_token": ["xoxb-2048-123456789012-AbCdEfGhIjKlMnOpQrStUvWx"],
    "stripe_key": ["sk_live_51HxYzAbCdEfGhIjKlMnOpQrSt"],
    "huggingface_token": ["hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"],
    "jwt": [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    ],
    "bearer_token": ["Authorization: Bearer 7f3c2a9e1b8d4c6f0a5e2d9c8b7a6f5e4d3c2b1a"],
    "private_key": [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
        "aNVLY2XTiTbtMGkyiM4E3jbPDT/4T8kVkPcvWU5bmTmTkGUoO8+QKu7I\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        "-----END OPENSSH PRIVATE KEY-----",
    ],
    "basic_auth_url": ["postgresql://report_user:S3cr3t!pass@db.internal:5432/sales"],
}

UNTOUCHED = [
    "Summarise today's OpenTelemetry news in two sentences.",
    "请用中文总结今天的天气预报。季度销售报告在附件里。",
    "The task-list has a risk-free skeleton: ask-me-anything sessions.",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it; uuid 123e4567-e89b-12d3-a456-426614174000",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "She was the bearer of bad news. Basic auth is described in RFC 7617.",
    "Visit https://example.com/path?q=1 or mailto:alice@example.com",
    "def main():\n    return sk_learn.fit(x_train, y_train)  # sklearn, not a key",
    "The public key starts with -----BEGIN PUBLIC KEY----- and is safe to share.",
]


@pytest.mark.parametrize(("kind", "secret"), [(k, s) for k, samples in SECRETS.items() for s in samples])
def test_each_secret_shape_is_masked_with_its_kind(kind: str, secret: str) -> None:
    text = f"Please debug this: {secret} -- thanks"
    masked = llm_otel.redact_secrets({"role": "user", "parts": [{"type": "text", "content": text}]})
    content = masked["parts"][0]["content"]
    assert f"[REDACTED:{kind}]" in content
    assert content.startswith("Please debug this: ") and content.endswith(" -- thanks")
    for token in secret.replace("\n", " ").split():
        if len(token) >= 16 and token != kind:  # no long piece of the secret is left
            assert token not in content


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_text_stays_untouched(text: str) -> None:
    message = {"role": "user", "parts": [{"type": "text", "content": text}]}
    assert llm_otel.redact_secrets(message) == message


def test_tool_call_arguments_and_results_are_masked_but_structure_is_kept() -> None:
    key = SECRETS["openai_key"][1]
    message = {
        "role": "assistant",
        "parts": [
            {
                "type": "tool_call",
                "id": "call_1",
                "name": "deploy",
                "arguments": {"env": {"API_KEY": key}},
            },
            {"type": "tool_call_response", "id": "call_1", "response": f"deployed with {key}"},
        ],
    }
    masked = llm_otel.redact_secrets(message)
    assert masked["parts"][0] == {
        "type": "tool_call",
        "id": "call_1",
        "name": "deploy",
        "arguments": {"env": {"API_KEY": "[REDACTED:openai_key]"}},
    }
    assert masked["parts"][1]["response"] == "deployed with [REDACTED:openai_key]"
    assert message["parts"][0]["arguments"]["env"]["API_KEY"] == key  # the caller's object untouched


def test_extra_patterns_and_a_chained_hook() -> None:
    seen = []

    def then(message):
        seen.append(message)
        return message

    redactor = llm_otel.SecretRedactor({"employee_id": r"\bEMP-\d{6}\b"}, then=then)
    text = "EMP-123456 used sk-Zq7yT1mB4xV9cK2nL8wR5pH3jD6fG0sAe1uIoP9lKjHgFdSa"
    masked = redactor({"role": "user", "parts": [{"type": "text", "content": text}]})
    assert masked["parts"][0]["content"] == "[REDACTED:employee_id] used [REDACTED:openai_key]"
    assert seen == [masked]
    with pytest.raises(ValueError, match="identifiers"):
        llm_otel.SecretRedactor({"not a name": "x"})


def test_with_setup_no_secret_reaches_the_span_or_the_store(tmp_path, fake_openai: FakeOpenAI) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    db_path = tmp_path / "llm_calls.db"
    key = SECRETS["anthropic_key"][0]
    fake_openai.script(Behavior(content=f"Your key {SECRETS['github_token'][0]} was revoked."))
    llm_otel.setup(db=f"sqlite:///{db_path}", tracer_provider=provider, redact=llm_otel.redact_secrets)
    try:
        with openai.OpenAI(base_url=fake_openai.base_url, api_key=API_KEY) as client:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {"role": "system", "content": f"Use the key {SECRETS['aws_access_key_id'][0]}."},
                    {"role": "user", "content": f"Why does {key} fail?"},
                ],
            )
        assert llm_otel.setup().flush()
    finally:
        llm_otel.shutdown()
        provider.shutdown()
    [span] = spans.get_finished_spans()
    recorded = json.dumps(dict(span.attributes), ensure_ascii=False)
    with sqlite3.connect(db_path) as connection:
        stored = json.dumps(
            [
                connection.execute("SELECT * FROM llm_calls").fetchall(),
                connection.execute("SELECT * FROM llm_call_bodies").fetchall(),
                connection.execute("SELECT * FROM llm_calls_fts").fetchall(),
            ],
            ensure_ascii=False,
        )
    for secret in (key, SECRETS["github_token"][0], SECRETS["aws_access_key_id"][0], API_KEY):
        assert secret not in recorded
        assert secret not in stored
    assert "Why does [REDACTED:anthropic_key] fail?" in span.attributes[attr.INPUT_MESSAGES]
    assert "[REDACTED:github_token]" in stored
    assert "[REDACTED:aws_access_key_id]" in stored
