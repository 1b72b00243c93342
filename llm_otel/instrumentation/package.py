"""The openai releases this instrumentation supports; also the ``openai`` extra in pyproject.toml."""

_instruments = ("openai >= 1.60",)
