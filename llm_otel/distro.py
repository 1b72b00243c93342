"""llm-otel's OpenTelemetry distro and configurator: zero-code that needs no other package.

``opentelemetry-instrument`` loads one distro and one configurator through the
``opentelemetry_distro`` and ``opentelemetry_configurator`` entry points, both named ``llm_otel``
here. After ``pip install 'llm-otel[otlp]'`` this records every OpenAI call of an unchanged app::

    OTEL_TRACES_EXPORTER=llm_otel_sqlite LLM_OTEL_DB=sqlite:///llm_calls.db \\
        opentelemetry-instrument python app.py

The distro sets these defaults, each only when the variable is unset (see docs/configuration.md):

- ``OTEL_TRACES_EXPORTER=llm_otel_sqlite``: the span store;
- ``OTEL_METRICS_EXPORTER=none``, ``OTEL_LOGS_EXPORTER=none``: llm-otel records spans only;
- ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``: the OTLP exporter that ``llm-otel[otlp]`` installs.

The configurator is the SDK's own (``_OTelSDKConfigurator``, which distros are meant to subclass)
after the same defaults. Why a distro of our own: without any, ``opentelemetry-instrument``
configures no SDK at all, and ``opentelemetry-distro``'s defaults (metrics and logs by OTLP over
gRPC) need ``opentelemetry-exporter-otlp-proto-grpc``, without which the whole auto-configuration
fails and nothing is recorded. With ``opentelemetry-distro`` installed as well, OpenTelemetry uses
whichever distro it finds first; ``OTEL_PYTHON_DISTRO=llm_otel`` picks this one.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL

DEFAULTS = {
    OTEL_TRACES_EXPORTER: "llm_otel_sqlite",
    OTEL_METRICS_EXPORTER: "none",
    OTEL_LOGS_EXPORTER: "none",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
}
"""The environment defaults of zero-code runs; a variable the user set is never changed."""


def apply_defaults() -> None:
    """Set each of ``DEFAULTS`` that the environment does not set (an empty value counts as unset)."""
    for name, value in DEFAULTS.items():
        if not os.environ.get(name, "").strip():
            os.environ[name] = value


class LLMOtelDistro(BaseDistro):
    """The ``llm_otel`` distro: applies ``DEFAULTS`` before the SDK is configured."""

    def _configure(self, **kwargs: Any) -> None:
        apply_defaults()


class LLMOtelConfigurator(_OTelSDKConfigurator):
    """The ``llm_otel`` configurator: the SDK's, after ``DEFAULTS`` (for what another distro left unset)."""

    def _configure(self, **kwargs: Any) -> None:
        apply_defaults()
        super()._configure(**kwargs)
