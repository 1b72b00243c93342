"""A chat completion's choice → its output message, the same whether the SDK's object or a dict."""

from __future__ import annotations

import openai.types.chat as chat

from llm_otel.instrumentation.messages import chat_output_message

ANSWER = {
    "role": "assistant",
    "content": "Checking the weather.",
    "refusal": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "not json"}},
    ],
}
EXPECTED = {
    "role": "assistant",
    "parts": [
        {"type": "text", "content": "Checking the weather."},
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"type": "tool_call", "id": "call_2", "name": "now", "arguments": "not json"},
    ],
    "finish_reason": "tool_calls",
}


def test_the_sdks_object_and_a_dict_give_the_same_message() -> None:
    sdk_message = chat.ChatCompletionMessage.model_validate(ANSWER)
    assert chat_output_message(sdk_message, "tool_calls") == EXPECTED
    assert chat_output_message(ANSWER, "tool_calls") == EXPECTED


def test_a_refusal_is_text_and_a_missing_message_is_an_empty_assistant_turn() -> None:
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    expected = {
        "role": "assistant",
        "parts": [{"type": "text", "content": "I can't help with that."}],
        "finish_reason": "stop",
    }
    assert chat_output_message(chat.ChatCompletionMessage.model_validate(refused), "stop") == expected
    assert chat_output_message(refused, "stop") == expected
    assert chat_output_message(None, None) == {"role": "assistant", "parts": [], "finish_reason": None}
