"""llm-otel in an app, by hand: the store, a serial throttled scheduler, a task and labels.

Run it against OpenAI (OPENAI_API_KEY) or any compatible server::

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-... python examples/manual_setup.py

then look at ``llm_calls.db`` (or ``LLM_OTEL_DB``): ``sqlite3 llm_calls.db 'select * from llm_calls'``.
"""

import asyncio

import openai

import llm_otel

llm_otel.setup(
    db="sqlite:///llm_calls.db",  # or LLM_OTEL_DB
    scheduler=llm_otel.Scheduler(max_concurrency=1, min_interval=0.2),  # serial, 5 calls/s at most
)


@llm_otel.task("summarise-inbox")  # every call inside links to this task
async def summarise(messages: list[str]) -> list[str]:
    client = openai.AsyncOpenAI()
    with llm_otel.labels(source="inbox", requested_by="alice"):
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"Summarise: {text}"}]
                )
                for text in messages
            )
        )
    await client.close()
    return [reply.choices[0].message.content for reply in replies]


if __name__ == "__main__":
    for summary in asyncio.run(summarise(["The meeting moved to Friday.", "Invoice 42 is overdue."])):
        print(summary)
    llm_otel.shutdown()  # flushes the store
