"""The page's files: shipped in the package, and free of what would let text run as code.

The browser tests show that payloads do not run; these checks keep the reasons in place: no
script parses HTML or evaluates text, the templates hold no inline script, style or handler (the
CSP would block them), and every file is package data.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from tests.children import REPO

PACKAGE = REPO / "admin_flask"
SCRIPTS = sorted((PACKAGE / "static" / "js").glob("*.js"))
TEMPLATES = sorted((PACKAGE / "templates" / "llm_otel_admin").glob("*.html"))

PARSES_OR_RUNS_TEXT = re.compile(
    r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|DOMParser"
    r"|createContextualFragment|setAttribute\(\s*[\"']on|\.srcdoc\b"
)


def test_every_page_file_is_package_data() -> None:
    table = (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1]
    patterns = re.findall(r'"([^"]+)"', re.search(r"admin_flask\s*=\s*\[([^\]]*)\]", table).group(1))
    files = [path for path in (PACKAGE / "static").rglob("*") if path.is_file()] + TEMPLATES
    assert SCRIPTS and TEMPLATES
    for path in files:
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (
            f"{relative} is not package data"
        )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_no_script_parses_html_or_evaluates_text(script: Path) -> None:
    found = [line for line in script.read_text().splitlines() if PARSES_OR_RUNS_TEXT.search(line)]
    assert found == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_templates_hold_no_inline_script_style_or_handler(template: Path) -> None:
    html = template.read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.findall(r"\sstyle\s*=", html) == [] and "<style" not in html
    assert re.findall(r"\son[a-z]+\s*=", html) == []
