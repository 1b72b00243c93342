"""Zero-code use, run exactly as the docs write it: the command line of README.md, docs/quickstart.md
and examples/zero_code_app.py, in a clean environment (``PATH``, the fake server's two OpenAI
variables and what the documented line sets; nothing else).

``pip install 'llm-otel[otlp]'`` does not install ``opentelemetry-distro``, but the test extra
does: the documented lines are run in an environment with this venv's packages minus
``opentelemetry-distro`` (``plain_bin``), and the line the docs give for environments that have it
runs in this venv.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import venv
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llm_otel.testing import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zero_code_app.py"
DOCUMENTED_ENDPOINT = "http://localhost:4318"


def documented_commands(text: str) -> list[str]:
    """The ``opentelemetry-instrument`` command lines in ``text`` (continuation lines joined)."""
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    return [line.strip() for line in lines if re.match(r"\s*(\w+=\S+\s+)*opentelemetry-instrument\s", line)]


def the_command(path: Path, *, having: str = "", lacking: tuple[str, ...] = ()) -> str:
    text = path.read_text()
    if path.suffix == ".py":
        text = ast.get_docstring(ast.parse(text)) or ""
    found = [
        line
        for line in documented_commands(text)
        if having in line and not any(word in line for word in lacking)
    ]
    assert len(found) == 1, f"{path.name}: expected one such command, found {found}"
    return found[0]


def run_as_written(
    command: str, *, bin_dir: Path, cwd: Path, openai_base_url: str, **replace: str
) -> subprocess.CompletedProcess:
    for old, new in replace.items():
        command = command.replace(old, new)
    words = shlex.split(command)
    assignments = [word for word in words if re.fullmatch(r"\w+=.*", word)]
    argv = words[len(assignments) :]
    assert argv[0] == "opentelemetry-instrument" and all(
        re.fullmatch(r"\w+=.*", word) for word in words[: len(assignments)]
    )
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "OPENAI_BASE_URL": openai_base_url,
        "OPENAI_API_KEY": "sk-fake",
        **dict(word.split("=", 1) for word in assignments),
    }
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def succeeded(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Failed to auto initialize" not in done.stderr, done.stderr
    assert done.stdout.strip() == "Echo: Say hello in three languages."


def calls(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT status, model, stream, prompt_preview FROM llm_calls").fetchall()


RECORDED = [("succeeded", "gpt-4o-mini", 1, "Say hello in three languages.")]


@pytest.fixture(scope="session")
def plain_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``bin`` directory whose ``python`` and ``opentelemetry-instrument`` see this venv's
    packages except ``opentelemetry-distro`` (what ``pip install 'llm-otel[otlp]'`` gives)."""
    root = tmp_path_factory.mktemp("without-opentelemetry-distro")
    packages = root / "site-packages"
    packages.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith("opentelemetry_distro-"):
            (packages / entry.name).symlink_to(entry)
    venv.create(root / "venv", symlinks=True, with_pip=False)
    bin_dir = root / "venv" / "bin"
    python = bin_dir / "python"
    own_site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    Path(own_site, "llm_otel_tests.pth").write_text(f"import site; site.addsitedir({str(packages)!r})\n")
    instrument = bin_dir / "opentelemetry-instrument"
    instrument.write_text(
        f"#!{python}\nimport sys\nfrom opentelemetry.instrumentation.auto_instrumentation import run\n"
        "sys.exit(run())\n"
    )
    instrument.chmod(0o755)
    distros = subprocess.check_output(
        [
            python,
            "-c",
            "from importlib.metadata import entry_points as e; "
            "print(sorted(p.name for p in e(group='opentelemetry_distro')))",
        ],
        text=True,
    )
    assert distros.strip() == "['llm_otel']"
    return bin_dir


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(EXAMPLE.read_text())
    return tmp_path


@pytest.mark.parametrize("doc", ["README.md", "docs/quickstart.md"])
def test_the_documented_command_records_the_call_with_nothing_else_installed_or_set(
    doc: str, plain_bin: Path, app_dir: Path, fake_openai: FakeOpenAI
) -> None:
    command = the_command(ROOT / doc, lacking=(",otlp", "OTEL_PYTHON_DISTRO"))
    done = run_as_written(command, bin_dir=plain_bin, cwd=app_dir, openai_base_url=fake_openai.base_url)
    succeeded(done)
    assert done.stderr == ""
    assert calls(app_dir / "llm_calls.db") == RECORDED


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces receiver: keeps each request's spans."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        self.server.spans.extend(  # type: ignore[attr-defined]
            (self.path, span.name)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.spans = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_quickstart_otlp_command_sends_the_spans_to_the_collector_and_the_store(
    plain_bin: Path, app_dir: Path, fake_openai: FakeOpenAI, collector: ThreadingHTTPServer
) -> None:
    command = the_command(ROOT / "docs" / "quickstart.md", having=",otlp")
    assert DOCUMENTED_ENDPOINT in command
    port = collector.server_address[1]
    done = run_as_written(
        command,
        bin_dir=plain_bin,
        cwd=app_dir,
        openai_base_url=fake_openai.base_url,
        **{DOCUMENTED_ENDPOINT: f"http://127.0.0.1:{port}"},  # the collector of this test
    )
    succeeded(done)
    assert collector.spans == [("/v1/traces", "chat gpt-4o-mini")]  # type: ignore[attr-defined]
    assert calls(app_dir / "llm_calls.db") == RECORDED


def test_with_opentelemetry_distro_installed_the_documented_line_picks_ours(
    app_dir: Path, fake_openai: FakeOpenAI
) -> None:
    """This venv has opentelemetry-distro (the test extra installs it)."""
    command = the_command(ROOT / "docs" / "quickstart.md", having="OTEL_PYTHON_DISTRO=llm_otel")
    done = run_as_written(
        command, bin_dir=Path(sys.executable).parent, cwd=app_dir, openai_base_url=fake_openai.base_url
    )
    succeeded(done)
    assert calls(app_dir / "llm_calls.db") == RECORDED


def test_the_examples_own_command_works_as_its_docstring_says(
    plain_bin: Path, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / EXAMPLE.name).write_text(EXAMPLE.read_text())
    command = the_command(EXAMPLE)
    done = run_as_written(command, bin_dir=plain_bin, cwd=tmp_path, openai_base_url=fake_openai.base_url)
    succeeded(done)
    assert calls(tmp_path / "llm_calls.db") == RECORDED
