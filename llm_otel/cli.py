"""The ``llm-otel`` command (click); ``llm-otel COMMAND --help`` documents each command.

- ``llm-otel demo``: a live demo: the fake OpenAI server, a workload that keeps making calls
  through llm-otel, and the admin page showing them, until Ctrl-C.
- ``llm-otel serve``: the standalone admin page and API over a store (``admin_flask.create_app``).
- ``llm-otel export``: the calls of a store as JSON lines, with the admin list's filters.
- ``llm-otel prune``: delete old calls from a store and give the space back.
- ``llm-otel fake-openai``: the fake OpenAI server, until Ctrl-C (also ``python -m llm_otel.testing``).

Options name their environment variable in ``--help``. Bad input is answered with one line on
stderr and exit code 2, a store that fails with one line and exit code 1; nothing is created
that the command was not asked to create. Long work reports progress on stderr (rewritten in
place on a terminal), so that stdout holds only the result.

Each command imports what it needs when it runs: only ``demo`` imports the OpenAI SDK (about a
second of start-up; ``tests/llm_otel/test_startup.py`` keeps the others free of it).
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import click

DEMO_DB = "sqlite:///llm_otel_demo.db"
ADMIN_PORT = 8000
FAKE_OPENAI_PORT = 8001
FAKE_API_KEY = "sk-fake"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
SORTS = ("newest", "duration", "first_token", "wait")


# -- option types -------------------------------------------------------------------------------


class Duration(click.ParamType):
    """A duration written as a number and a unit: ``7d``, ``12h``, ``30m``, ``90s``, ``500ms``.

    ``default_unit`` makes a bare number mean that unit (``--older-than-days 0.5``).
    """

    name = "duration"
    _SECONDS: ClassVar[dict[str, float]] = {"d": 86_400, "h": 3_600, "m": 60, "s": 1, "ms": 0.001}

    def __init__(self, default_unit: str | None = None) -> None:
        self.default_unit = default_unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime.timedelta):
            return value
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ms|[dhms])?", str(value).strip().lower())
        unit = match and (match[2] or self.default_unit)
        if not match or not unit:
            if self.default_unit == "d":
                self.fail(f"{value!r} is not a number of days of 0 or more (e.g. 7 or 0.5)", param, ctx)
            self.fail(
                f"{value!r} is not a duration: write a number and a unit, e.g. 7d, 12h, 30m, 90s or 500ms",
                param,
                ctx,
            )
        return datetime.timedelta(seconds=float(match[1]) * self._SECONDS[unit])


class When(click.ParamType):
    """A moment: ISO 8601 (``2026-11-30``, ``2026-11-30T08:00:00+01:00``; UTC without an offset)
    or a duration ago (``24h``: 24 hours before now). Converted to epoch milliseconds."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if re.fullmatch(r"[\d.]+(ms|[dhms])", text.lower()):
            ago = Duration().convert(text, param, ctx)
            return time.time_ns() // 1_000_000 - int(ago.total_seconds() * 1000)
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(
                f"{value!r} is not a time: write ISO 8601 (2026-11-30, 2026-11-30T08:00:00Z) or a "
                "duration ago (24h, 7d)",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return int(moment.timestamp() * 1000)


# -- helpers shared by the commands -------------------------------------------------------------


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


def _calls_in(db_url: str) -> int | None:
    """How many calls the store at ``db_url`` holds; None when there is no store there yet (or the
    URL names none). A database that cannot be reached raises ``StoreDatabaseError``."""
    import peewee

    from exporter import StoreConfigurationError, StoreDatabaseError, open_database

    try:
        database = open_database(db_url, create=False)
    except StoreConfigurationError:
        return None
    try:
        if not database.table_exists("llm_calls"):
            return None
        return database.execute_sql("SELECT count(*) FROM llm_calls").fetchone()[0]
    except peewee.DatabaseError as exc:
        raise StoreDatabaseError(f"the store cannot be reached: {' '.join(str(exc).split())}") from exc
    finally:
        database.close()


@contextmanager
def _until_interrupted() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C (SIGINT) or SIGTERM, for commands that run until stopped; a
    second Ctrl-C aborts at once."""
    stop = threading.Event()

    def first(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Progress:
    """One status line on stderr: rewritten in place on a terminal (at most 5 times a second),
    else printed at most every ``pipe_interval`` seconds; ``done`` ends it with a final line."""

    def __init__(self, stream: IO[str] | None = None, pipe_interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else pipe_interval
        self.last = 0.0
        self.width = 0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        self.stream.write(("\r" + text.ljust(self.width) if self.tty and self.width else text) + "\n")
        self.stream.flush()


def _count(number: int) -> str:
    return f"{number:,}"


def _calls(number: int) -> str:
    return f"{number:,} call" if number == 1 else f"{number:,} calls"


_DB_HELP = "the store: sqlite:///path.db, a file path, or postgresql://user:password@host:5432/dbname"


def _db_option(**kwargs: Any) -> Any:
    return click.option(
        "--db", envvar="LLM_OTEL_DB", show_envvar=True, metavar="URL", help=_DB_HELP, **kwargs
    )


def _admin_options(command: Any) -> Any:
    """``--host``, ``--port`` and ``--token`` of the admin server (``serve`` and ``demo``)."""
    options = [
        click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            metavar="HOST",
            envvar="LLM_OTEL_ADMIN_HOST",
            show_envvar=True,
            help="the address the admin page listens on",
        ),
        click.option(
            "--port",
            default=ADMIN_PORT,
            show_default=True,
            type=click.IntRange(0, 65535),
            metavar="PORT",
            envvar="LLM_OTEL_ADMIN_PORT",
            show_envvar=True,
            help="the port the admin page listens on (0: any free port)",
        ),
        click.option(
            "--token",
            metavar="TOKEN",
            envvar="LLM_OTEL_ADMIN_TOKEN",
            show_envvar=True,
            help="the admin token (Bearer header or login form)  [default: a new one each run]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass
class _AdminServer:
    """The admin app served by Werkzeug's threaded server on a thread of its own."""

    server: Any
    thread: threading.Thread
    url: str
    login_url: str

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _start_admin(db: str, host: str, port: int, token: str | None, *, log_requests: bool) -> _AdminServer:
    """Serve ``admin_flask.create_app(db, token)`` on ``host:port``; needs ``llm-otel[admin]``."""
    try:
        from werkzeug.serving import make_server

        from admin_flask import create_app
        from admin_flask.app import login_path
    except ImportError as exc:
        raise click.ClickException(
            f"the admin page needs the admin extra ({exc}): pip install 'llm-otel[admin]'"
        ) from exc
    logging.getLogger("werkzeug").setLevel(logging.INFO if log_requests else logging.WARNING)
    app = create_app(db=db, token=token or secrets.token_urlsafe(24))
    # Our own listening socket: Werkzeug answers a port in use with sys.exit(1) and two lines.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as listening:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listening.bind((host, port))
        except OSError as exc:
            raise click.BadParameter(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}", param_hint="'--port'"
            ) from exc
        listening.listen(128)
        server = make_server(host, port, app, threaded=True, fd=listening.fileno())  # takes a duplicate
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host
    origin = f"http://{shown}:{server.port}"
    page = login_path(app).split("?", 1)[0]
    thread = threading.Thread(target=server.serve_forever, name="llm-otel-admin", daemon=True)
    thread.start()
    return _AdminServer(server, thread, origin + page, origin + login_path(app))


# -- the commands -------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llm-otel")
def cli() -> None:
    """llm-otel: every OpenAI SDK call of a Python app as an OpenTelemetry span, in a store.

    Options can also be set by the environment variables their help names.
    """


def _fixture_names() -> list[str]:
    from exporter.fixtures import FIXTURES

    return list(FIXTURES)


@cli.command()
@_db_option(default=DEMO_DB, show_default=True)
@_admin_options
@click.option(
    "--duration",
    type=Duration(default_unit="s"),
    envvar="LLM_OTEL_DEMO_DURATION",
    show_envvar=True,
    help="stop after this long (e.g. 90s, 10m)  [default: until Ctrl-C]",
)
@click.option(
    "--fixture",
    type=click.Choice(_fixture_names()),
    metavar="NAME",
    envvar="LLM_OTEL_DEMO_FIXTURE",
    show_envvar=True,
    help=f"load this mock state into the store first: {', '.join(_fixture_names())}",
)
@click.option(
    "--base-url",
    metavar="URL",
    envvar="LLM_OTEL_DEMO_BASE_URL",
    show_envvar=True,
    help="send the workload to this OpenAI-compatible server instead of the fake one (it costs tokens)",
)
@click.option(
    "--api-key",
    metavar="KEY",
    envvar=["LLM_OTEL_DEMO_API_KEY", "OPENAI_API_KEY"],
    show_envvar=True,
    help="the API key of --base-url",
)
@click.option(
    "--model",
    default="gpt-4o-mini",
    show_default=True,
    metavar="NAME",
    help="the chat model to ask on --base-url",
)
@click.option(
    "--workers",
    default=3,
    show_default=True,
    type=click.IntRange(1, 32),
    metavar="N",
    help="workers making calls at once",
)
@click.option("--seed", type=int, help="make the workload's choices repeatable  [default: random]")
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    metavar="DAYS",
    help="days of calls the store keeps  [default: LLM_OTEL_RETENTION_DAYS, else 7]",
)
def demo(
    db: str,
    host: str,
    port: int,
    token: str | None,
    duration: datetime.timedelta | None,
    fixture: str | None,
    base_url: str | None,
    api_key: str | None,
    model: str,
    workers: int,
    seed: int | None,
    retention_days: float | None,
) -> None:
    """Watch llm-otel record a live workload in the admin page.

    Starts the built-in fake OpenAI server (no OpenAI key needed), sets llm-otel up on the store
    with a serial, throttled scheduler, and runs a workload that keeps making calls until Ctrl-C:
    several sources and users, tasks with several calls, multi-turn chats in English and Chinese,
    tool calls, streams with slow first tokens, retried rate limits, failures and timeouts. The
    admin page is served in the same process; its URL and login link are printed. An existing
    store is added to. On exit it prints what this run recorded.
    """
    import llm_otel
    from llm_otel.demo import Target, Workload, report
    from llm_otel.testing import FakeOpenAI

    context = click.get_current_context()
    if base_url is None and context.get_parameter_source("api_key") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--api-key goes with --base-url (the fake server needs no key)")
    progress = _Progress()
    before = _calls_in(db)
    if fixture is not None:
        from exporter.fixtures import load_fixture

        click.echo(f"loading the {fixture!r} fixture into {_display_url(db)} ...", err=True)
        written = load_fixture(fixture, db)
        click.echo(f"loaded {_calls(written)}", err=True)
    started_ms = time.time_ns() // 1_000_000
    fake = None
    if base_url is None:
        fake = FakeOpenAI(max_calls=1000).start()  # it runs for hours: keep the latest calls only
        target = Target.fake_server(fake)
    else:
        target = Target.real_server(base_url, api_key or "", model)
    admin = None
    try:
        chosen = context.get_parameter_source("port") is not click.core.ParameterSource.DEFAULT
        admin = _demo_admin(db, host, port, token, any_port_will_do=not chosen)
        scheduler = llm_otel.Scheduler(max_concurrency=1, min_interval=0.25, name="demo")
        handle = llm_otel.setup(db=db, scheduler=scheduler, retention_days=retention_days)
        where = handle.store.path or _display_url(db)
        if before is None and fixture is None:
            click.echo(f"Recording into {where} (a new store).")
        else:
            click.echo(f"Adding to {where}, which holds {_calls(_calls_in(db) or 0)} already.")
        click.echo(
            f"Calls go to {'the fake OpenAI server (no OpenAI key needed)' if fake else base_url}, "
            "one at a time, 4 a second at most (a serial, throttled scheduler)."
        )
        if admin is not None:
            click.echo(f"Admin page: {admin.url}")
            click.echo(f"Log in:     {admin.login_url}")
        click.echo("Ctrl-C stops." if duration is None else f"Stops after {_age(duration)} (or Ctrl-C).")
        sys.stdout.flush()
        workload = Workload(target, seed=seed).start(workers)
        with _until_interrupted() as stop:
            deadline = None if duration is None else time.monotonic() + duration.total_seconds()
            while not stop.wait(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                status = scheduler.status()
                progress.update(
                    f"{_calls(status['dispatched_total'])} so far, {status['queue_depth']} waiting"
                )
            progress.done("stopping after the calls in flight ...")
            if not workload.stop() and fake is not None:
                fake.stop()  # ends the waits of the calls still in flight, so that they end and
                workload.stop()  # are recorded before the store shuts
            llm_otel.shutdown()
    finally:
        if admin is not None:
            admin.stop()
        if fake is not None:
            fake.stop()
    click.echo(report(db, since_ms=started_ms))


def _demo_admin(
    db: str, host: str, port: int, token: str | None, *, any_port_will_do: bool
) -> _AdminServer | None:
    """The demo's admin page; on another free port when the default one is taken (and none was
    asked for); without the admin extra the demo runs without it and says so."""
    try:
        try:
            return _start_admin(db, host, port, token, log_requests=False)
        except click.BadParameter as exc:
            if not any_port_will_do:
                raise
            click.echo(f"{exc.message}; the admin page takes a free port instead", err=True)
            return _start_admin(db, host, 0, token, log_requests=False)
    except click.BadParameter:
        raise
    except click.ClickException as exc:
        click.echo(f"No admin page: {exc.format_message()}", err=True)
        return None


@cli.command()
@_db_option(default="sqlite:///llm_calls.db", show_default=True)
@_admin_options
@click.option("--quiet", is_flag=True, help="do not log each request on stderr")
def serve(db: str, host: str, port: int, token: str | None, quiet: bool) -> None:
    """Serve the admin page and API over a store until Ctrl-C.

    The standalone admin (admin_flask.create_app) on Werkzeug's threaded server, for one machine.
    Prints the page's URL and a login link. Behind gunicorn, use its gthread workers (the live
    feed's websocket holds a thread per connection) and set LLM_OTEL_ADMIN_TOKEN:

    \b
    gunicorn -k gthread --threads 32 -b 127.0.0.1:8000 'admin_flask:create_app()'
    """
    from exporter import StoreDatabaseError

    try:
        existing = _calls_in(db)
        state = "a new, empty store" if existing is None else _calls(existing)
    except StoreDatabaseError as exc:  # the page says so too, and recovers when the store is back
        state = f"{exc}; the page answers 503 until it is back"
    admin = _start_admin(db, host, port, token, log_requests=not quiet)
    with _until_interrupted() as stop:
        click.echo(f"llm-otel admin on {admin.url} ({_display_url(db)}: {state})")
        click.echo(f"Log in: {admin.login_url}")
        click.echo("Ctrl-C stops.")
        sys.stdout.flush()
        stop.wait()
    admin.stop()
    click.echo("stopped", err=True)


@cli.command()
@_db_option(required=True)
@click.option(
    "--status",
    multiple=True,
    metavar="STATUS",
    help=f"only calls with this status ({', '.join(STATUSES)}); repeat or comma-separate for several",
)
@click.option("--source", help="only calls of this source")
@click.option("--requested-by", help="only calls requested by this user")
@click.option("--model", help="only calls to this model")
@click.option("--task", "task_id", metavar="TASK_ID", help="only the calls of this task")
@click.option("--error-type", help="only failures of this error type (e.g. RateLimitError)")
@click.option(
    "--since", type=When(), help="only calls enqueued from then on: 2026-11-30T08:00Z, or 24h (ago)"
)
@click.option("--until", type=When(), help="only calls enqueued before then (the same forms)")
@click.option("--slower-than", type=Duration(), help="only calls that took at least this long (e.g. 2s)")
@click.option("--search", metavar="TEXT", help="only calls whose prompt or response contains this text")
@click.option(
    "--sort",
    type=click.Choice(SORTS),
    default="newest",
    show_default=True,
    help="newest first, or slowest first",
)
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="the file to write  [default: stdout]",
)
def export(
    db: str,
    status: tuple[str, ...],
    source: str | None,
    requested_by: str | None,
    model: str | None,
    task_id: str | None,
    error_type: str | None,
    since: int | None,
    until: int | None,
    slower_than: datetime.timedelta | None,
    search: str | None,
    sort: str,
    output: IO[str],
) -> None:
    """Write the calls of a store as JSON lines (messages included, newest first).

    One JSON object per call, as the admin API's export (GET .../llm/calls/export) writes them:
    every column, ISO 8601 times, the full input and output messages. Filters combine with AND.
    Reads in small chunks: memory stays flat on any store. Example:

    \b
    llm-otel export --db sqlite:///llm_calls.db --status failed --since 24h > failed.jsonl
    """
    from exporter import QueryError, StoreError, queries
    from exporter.models import db as bound

    try:
        from admin_flask import serialize
    except ImportError as exc:
        raise click.ClickException(
            f"export writes the admin API's JSON, which needs the admin extra ({exc}): "
            "pip install 'llm-otel[admin]'"
        ) from exc
    statuses = [part.strip() for value in status for part in value.split(",") if part.strip()]
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}: the statuses are {', '.join(STATUSES)}", param_hint="'--status'"
        )
    database = _open_store(db)
    bound.initialize(database)
    progress = _Progress()
    exported = 0
    click.echo(f"exporting calls from {_display_url(db)} ...", err=True)
    try:
        for row in queries.iter_calls(
            status=statuses or None,
            source=source,
            requested_by=requested_by,
            model=model,
            parent_task_id=task_id,
            error_type=error_type,
            since_ms=since,
            until_ms=until,
            min_duration_ms=None if slower_than is None else int(slower_than.total_seconds() * 1000),
            q=search,
            sort=sort,
        ):
            output.write(serialize.dumps(serialize.export_line(row)) + "\n")
            exported += 1
            progress.update(f"exported {_calls(exported)} ...")
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        output.flush()
        database.close()
    where = "stdout" if getattr(output, "name", "-") in ("-", "<stdout>") else output.name
    progress.done(f"exported {_calls(exported)} to {where}")


@cli.command()
@_db_option(required=True)
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
    from exporter import StoreError, retention_days_from_env

    if older_than is not None and older_than_days is not None:
        raise click.UsageError("give --older-than or --older-than-days, not both")
    age = older_than if older_than is not None else older_than_days  # timedelta(0) is falsy
    if age is None:
        try:
            age = datetime.timedelta(days=retention_days_from_env())
        except StoreError as exc:
            raise click.UsageError(str(exc)) from exc
    database = _open_store(db)
    try:
        deleted = _prune_showing_progress(database, age, f"{_age(age)} from {_display_url(db)}")
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        database.close()
    rows = "row" if deleted == 1 else "rows"
    click.echo(f"deleted {deleted} {rows} older than {_age(age)} from {_display_url(db)}")


def _prune_showing_progress(database: Any, age: datetime.timedelta, what: str) -> int:
    """``exporter.prune`` on a thread, while this one counts what is left to delete."""
    from exporter import prune

    now_ms = time.time_ns() // 1_000_000
    cutoff_ms = now_ms - int(age.total_seconds() * 1000)
    count = (
        f"SELECT count(*) FROM llm_calls WHERE enqueued_at < {database.param}"
        " AND status IN ('succeeded', 'failed', 'cancelled')"
    )
    due = database.execute_sql(count, (cutoff_ms,)).fetchone()[0]
    click.echo(f"pruning {_calls(due)} older than {what} ...", err=True)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["deleted"] = prune(database, older_than=age, now_ms=now_ms)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            database.close()  # this thread's connection

    worker = threading.Thread(target=run, name="llm-otel-prune", daemon=True)
    worker.start()
    progress = _Progress()
    while worker.is_alive():
        worker.join(0.5)
        if worker.is_alive() and due:
            left = database.execute_sql(count, (cutoff_ms,)).fetchone()[0]
            progress.update(f"deleted {_count(due - left)} of {_calls(due)} ({(due - left) / due:.0%})")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["deleted"]


def _age(age: datetime.timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


@cli.command("fake-openai")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    envvar="LLM_OTEL_FAKE_OPENAI_HOST",
    show_envvar=True,
    help="the address to listen on",
)
@click.option(
    "--port",
    default=FAKE_OPENAI_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    envvar="LLM_OTEL_FAKE_OPENAI_PORT",
    show_envvar=True,
    help="the port to listen on (0: any free port)",
)
@click.option("--quiet", is_flag=True, help="do not log each request on stderr")
def fake_openai(host: str, port: int, quiet: bool) -> None:
    """Run the fake OpenAI server until Ctrl-C.

    An OpenAI-compatible API (chat completions, responses, embeddings, models; streaming too) that
    answers "Echo: <your last message>" with real token counts. Point an app at it to try
    llm-otel without an OpenAI key.
    """
    from llm_otel.testing import FakeOpenAI

    server = FakeOpenAI(port=port, host=host, max_calls=1000)
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
