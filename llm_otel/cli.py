"""The ``llm-otel`` command.

- ``llm-otel demo``: start the fake OpenAI server, set llm-otel up on a SQLite store, run the demo
  workload and print what the store recorded.
- ``llm-otel prune``: delete calls older than N days from a store and give the space back.

Every flag has an environment variable with the same meaning: ``--db`` is ``LLM_OTEL_DB``,
``--retention-days`` / ``--older-than-days`` is ``LLM_OTEL_RETENTION_DAYS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

DEMO_DB = "sqlite:///llm_otel_demo.db"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value} ms"


def _tokens(call: dict[str, Any]) -> str:
    if call.get("input_tokens") is None:
        return "no usage"
    text = f"tokens in {call['input_tokens']}"
    if call.get("cached_tokens"):
        text += f" (cached {call['cached_tokens']})"
    if call.get("output_tokens") is not None:
        text += f", out {call['output_tokens']}"
    if call.get("reasoning_tokens"):
        text += f" (reasoning {call['reasoning_tokens']})"
    return text


def _print_summary(db_url: str) -> None:
    """Read the calls back from the store (not from memory) and print them."""
    from exporter import open_database, queries
    from exporter.models import db

    db.initialize(open_database(db_url))
    page = queries.list_calls(page_size=50)
    print(f"\n{page['total']} calls recorded in {db_url}:\n")
    for call in reversed(page["items"]):
        print(
            f"  {call['status']:<9} {call['operation']:<10} {call['model']:<22} "
            f"source={call.get('source') or '-':<14} task={call.get('parent_task_name') or '-'}"
        )
        print(
            f"            wait {_ms(call.get('wait_ms'))}, first token {_ms(call.get('first_token_ms'))}, "
            f"duration {_ms(call.get('duration_ms'))}, retries {call.get('retry_count')}, {_tokens(call)}"
        )
        print(f"            prompt: {(call.get('prompt_preview') or '').replace(chr(10), ' ')[:90]}")
        if call.get("error_type"):
            print(f"            error:  {call['error_type']}: {(call.get('error_message') or '')[:90]}")
    stats = queries.status_aggregates(window_ms=3_600_000)
    print("\nLast hour:", {key: stats[key] for key in ("counts", "error_rate") if key in stats})


def _demo(args: argparse.Namespace) -> int:
    import llm_otel
    from llm_otel.demo import run_demo
    from llm_otel.testing import FakeOpenAI

    scheduler = llm_otel.Scheduler(max_concurrency=2, min_interval=0.05, name="demo")
    handle = llm_otel.setup(db=args.db, scheduler=scheduler, retention_days=args.retention_days)
    with FakeOpenAI() as server:
        print(f"Fake OpenAI server on {server.base_url}; recording into {args.db}")
        run_demo(server)
    handle.flush()
    llm_otel.shutdown()
    _print_summary(args.db)
    return 0


def _prune(args: argparse.Namespace) -> int:
    from exporter import prune, retention_days_from_env

    days = args.older_than_days or retention_days_from_env()
    deleted = prune(args.db, older_than=days)
    print(f"deleted {deleted} rows older than {days} days from {args.db}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-otel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo workload against the fake OpenAI server")
    demo.add_argument("--db", default=os.environ.get("LLM_OTEL_DB", DEMO_DB), help="store URL [LLM_OTEL_DB]")
    demo.add_argument("--retention-days", type=float, help="default: LLM_OTEL_RETENTION_DAYS or 7")
    demo.set_defaults(run=_demo)

    prune = commands.add_parser("prune", help="delete old calls from a store and shrink the file")
    prune.add_argument(
        "--db", default=os.environ.get("LLM_OTEL_DB"), required="LLM_OTEL_DB" not in os.environ
    )
    prune.add_argument("--older-than-days", type=float, help="default: LLM_OTEL_RETENTION_DAYS or 7")
    prune.set_defaults(run=_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
