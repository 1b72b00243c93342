"""``python -m llm_otel.testing``: the fake OpenAI server until Ctrl-C, as ``llm-otel fake-openai``."""

import sys

from llm_otel.cli import fake_openai, run

sys.exit(run(fake_openai, prog_name="python -m llm_otel.testing"))
