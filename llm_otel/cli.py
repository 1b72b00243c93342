"""The ``llm-otel`` command (click); ``llm-otel COMMAND --help`` documents each command.

- ``llm-otel demo``: the demo workload against the built-in fake OpenAI server, recorded in a store.
- ``llm-otel prune``: delete old calls from a store and give the space back.
- ``llm-otel fake-openai``: the fake OpenAI server, until Ctrl-C (also ``python -m llm_otel.testing``).

Options name their environment variable in ``--help``. Bad input is answered with one line on
stderr and exit code 2, a store that fails with one line and exit code 1; nothing is created
that the command was not asked to create.
"""

from __future__ import annotations

import datetime
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import click

DEMO_DB = "sqlite:///llm_otel_demo.db"
FAKE_OPENAI_PORT = 8001
FAKE_API_KEY = "sk-fake"


class Duration(click.ParamType):
    """A duration written as a number and a unit: ``7d``, ``12h``, ``30m``, ``90s``.

    ``default_unit`` makes a bare number mean that unit (``--older-than-days 0.5``).
    """

    name = "duration"
    _SECONDS: ClassVar[dict[str, int]] = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}

    def __init__(self, default_unit: str | None = None) -> None:
        self.default_unit = default_unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime.timedelta):
            return value
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([dhms]?)", str(value).strip().lower())
        unit = match and (match[2] or self.default_unit)
        if not match or not unit:
            if self.default_unit:
                self.fail(f"{value!r} is not a number of days of 0 or more (e.g. 7 or 0.5)", param, ctx)
            self.fail(
                f"{value!r} is not a duration: write a number and a unit, e.g. 7d, 12h, 30m or 90s",
                param,
                ctx,
            )
        return datetime.timedelta(seconds=float(match[1]) * self._SECONDS[unit])


def _display_url(url: str) -> str:
    """``url`` with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def _open_store(url: str) -> Any:
    """The existing store at ``url``, migrated; a missing file or a database that is not a store is
    refused as bad input (exit 2) and nothing is created."""
    import peewee

    from exporter import StoreError, migrate, open_database

    shown = _display_url(url)
    try:
        database = open_database(url, create=False)
    except StoreError as exc:
        raise click.BadParameter(str(exc), param_hint="'--db'") from exc
    try:
        is_store = database.table_exists("llm_calls")
    except peewee.DatabaseError as exc:
        if isinstance(database, peewee.SqliteDatabase):
            raise click.BadParameter(
                f"{shown} is not a SQLite database ({exc})", param_hint="'--db'"
            ) from exc
        raise click.ClickException(f"cannot reach the store {shown}: {' '.join(str(exc).split())}") from exc
    if not is_store:
        database.close()
        raise click.BadParameter(
            f"{shown} is not an llm-otel store (it has no llm_calls table)", param_hint="'--db'"
        )
    migrate(database)
    return database


@contextmanager
def _until_interrupted() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) or SIGTERM, for commands that run until stopped."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_DB_HELP = "the store: sqlite:///path.db, a file path, or postgresql://user:password@host:5432/dbname"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llm-otel")
def cli() -> None:
    """llm-otel: every OpenAI SDK call of a Python app as an OpenTelemetry span, in a store.

    Options can also be set by the environment variables their help names.
    """


@cli.command()
@click.option(
    "--db",
    default=DEMO_DB,
    show_default=True,
    envvar="LLM_OTEL_DB",
    show_envvar=True,
    metavar="URL",
    help=_DB_HELP,
)
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    metavar="DAYS",
    help="days of calls the store keeps  [default: LLM_OTEL_RETENTION_DAYS, else 7]",
)
def demo(db: str, retention_days: float | None) -> None:
    """Record the demo workload and print what the store holds.

    Starts the built-in fake OpenAI server (no OpenAI key needed), makes tasks, multi-turn and
    streamed chats, tool calls, retried 429s and a failure against it, and prints the calls read
    back from the store. An existing store is added to, not replaced.
    """
    from llm_otel.demo import run_demo_and_report

    run_demo_and_report(db, retention_days=retention_days, echo=click.echo)


@cli.command()
@click.option("--db", required=True, envvar="LLM_OTEL_DB", show_envvar=True, metavar="URL", help=_DB_HELP)
@click.option(
    "--older-than",
    type=Duration(),
    help="delete calls enqueued longer ago than this: 7d, 12h, 30m or 90s",
)
@click.option(
    "--older-than-days",
    type=Duration(default_unit="d"),
    metavar="DAYS",
    help="the same in days (0 deletes every ended call)  [default: LLM_OTEL_RETENTION_DAYS, else 7]",
)
def prune(db: str, older_than: datetime.timedelta | None, older_than_days: datetime.timedelta | None) -> None:
    """Delete old calls from a store and give the space back.

    Deletes the ended calls (succeeded, failed, cancelled) enqueued before the cut-off, with their
    messages and events, the tasks started before it and stale scheduler snapshots, in short
    transactions that apps writing the same store barely notice.
    """
    from exporter import StoreError, prune, retention_days_from_env

    if older_than is not None and older_than_days is not None:
        raise click.UsageError("give --older-than or --older-than-days, not both")
    age = older_than if older_than is not None else older_than_days  # timedelta(0) is falsy
    if age is None:
        try:
            age = datetime.timedelta(days=retention_days_from_env())
        except StoreError as exc:
            raise click.UsageError(str(exc)) from exc
    database = _open_store(db)
    click.echo(f"pruning calls older than {_age(age)} from {_display_url(db)} ...", err=True)
    try:
        deleted = prune(database, older_than=age)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        database.close()
    rows = "row" if deleted == 1 else "rows"
    click.echo(f"deleted {deleted} {rows} older than {_age(age)} from {_display_url(db)}")


def _age(age: datetime.timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


@cli.command("fake-openai")
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="LLM_OTEL_FAKE_OPENAI_HOST", show_envvar=True,
    help="the address to listen on",
)  # fmt: skip
@click.option(
    "--port", default=FAKE_OPENAI_PORT, show_default=True, type=click.IntRange(0, 65535),
    envvar="LLM_OTEL_FAKE_OPENAI_PORT", show_envvar=True, help="the port to listen on (0: any free port)",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="do not log each request on stderr")
def fake_openai(host: str, port: int, quiet: bool) -> None:
    """Run the fake OpenAI server until Ctrl-C.

    An OpenAI-compatible API (chat completions, responses, embeddings, models; streaming too) that
    answers "Echo: <your last message>" with real token counts. Point an app at it to try
    llm-otel without an OpenAI key.
    """
    from llm_otel.testing import FakeOpenAI

    server = FakeOpenAI(port=port, host=host)
    try:
        server.start()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", param_hint="'--port'"
        ) from exc
    if not quiet:
        _log_requests()
    with _until_interrupted() as stop:
        click.echo(f"Fake OpenAI server on {server.base_url} (any API key works; Ctrl-C stops it).")
        click.echo("Point the OpenAI SDK at it:")
        click.echo(f"OPENAI_BASE_URL={server.base_url} OPENAI_API_KEY={FAKE_API_KEY}")
        sys.stdout.flush()
        stop.wait()
    server.stop()
    click.echo("stopped", err=True)


def _log_requests() -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("llm_otel.testing.server")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


_NoArgsIsHelp: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click < 8.2 prints the help itself


def run(command: click.Command, argv: Sequence[str] | None = None, *, prog_name: str = "llm-otel") -> int:
    """Run ``command`` as a program; returns its exit code (errors as one line on stderr)."""
    from exporter import StoreConfigurationError, StoreError
    from llm_otel import ConfigurationError, LLMOtelError

    try:
        return command.main(args=argv, prog_name=prog_name, standalone_mode=False) or 0
    except _NoArgsIsHelp as exc:  # the bare command: its help, as click >= 8.2 gives it
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (StoreConfigurationError, ConfigurationError) as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    except (StoreError, LLMOtelError) as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """The ``llm-otel`` console script."""
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
