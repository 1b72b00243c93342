"""The store spells the span contract's names itself; they must equal llm_otel's."""

from __future__ import annotations

from exporter import _names
from llm_otel import attributes, lifecycle

# Names of OpenTelemetry's own exception event, which llm_otel does not define.
_OTEL_NAMES = {"EXCEPTION_EVENT", "EXCEPTION_TYPE", "EXCEPTION_MESSAGE"}


def test_every_name_the_store_reads_equals_llm_otels() -> None:
    ours = {name: value for name, value in vars(_names).items() if name.isupper() and name not in _OTEL_NAMES}
    theirs = {name: value for name, value in vars(attributes).items() if name.isupper()}
    theirs |= {name: getattr(lifecycle, name) for name in ("QUEUED", "DISPATCHED", "FIRST_TOKEN", "RETRY")}

    assert {name: theirs.get(name) for name in ours} == ours
