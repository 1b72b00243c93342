"""An opt-in redactor for secrets that users paste into prompts: ``setup(redact=redact_secrets)``.

Prompts and tool results carry whatever users and tools put in them, API keys and tokens included;
once recorded, they sit in the store and in every OTel backend the spans go to. ``redact_secrets``
masks the common secret shapes in every string of a message (text parts, tool-call arguments,
tool results) before anything is recorded::

    import llm_otel
    llm_otel.setup(db="sqlite:///llm_calls.db", redact=llm_otel.redact_secrets)

    # "my key is sk-proj-AbC…" is recorded as "my key is [REDACTED:openai_key]"

``SecretRedactor(extra={"employee_id": r"EMP-\\d{6}"})`` adds patterns of the app's own, and chains
with the app's own hook through ``SecretRedactor(then=my_hook)``. The shapes are chosen to be
specific (a provider's prefix and length, a PEM armour, a JWT's three parts) so that ordinary text,
code, hashes and UUIDs stay untouched; a secret of no known shape is not found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from llm_otel.instrumentation.messages import Message, Redact

SECRET_PATTERNS: Mapping[str, str] = {
    # PEM private keys (RSA, EC, OpenSSH, PKCS#8, encrypted): the whole armoured block.
    "private_key": (
        r"-----BEGIN[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?-----END[A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----"
    ),
    "anthropic_key": r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    "openai_key": r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "aws_access_key_id": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "aws_secret_access_key": r"(?i:aws_?secret_?access_?key)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}\b",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})",
    "gitlab_token": r"\bglpat-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "stripe_key": r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,}",
    "huggingface_token": r"\bhf_[A-Za-z0-9]{30,}",
    "groq_key": r"\bgsk_[A-Za-z0-9]{40,}",
    "xai_key": r"\bxai-[A-Za-z0-9]{40,}",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "bearer_token": r"(?i:\bbearer)\s+[A-Za-z0-9._~+/\-]{20,}=*",
    "basic_auth_url": r"(?<=://)[^\s:/@]{1,64}:[^\s@/]{1,128}(?=@)",
}
"""The secret shapes ``redact_secrets`` masks, by name; the name is shown as ``[REDACTED:<name>]``."""

_KEEP_KEYS = frozenset({"type", "role", "id", "name", "finish_reason", "mime_type", "modality"})
"""Message keys whose values are structure, not content: never rewritten."""


class SecretRedactor:
    """A ``redact`` hook that masks secrets in every string of a message; see the module docstring.

    ``extra`` adds patterns (name → regular expression), ``then`` runs another hook afterwards.
    The message is not changed in place: a masked copy is returned.
    """

    def __init__(self, extra: Mapping[str, str] | None = None, *, then: Redact | None = None) -> None:
        patterns = {**SECRET_PATTERNS, **(extra or {})}
        for name in patterns:
            if not name.isidentifier():
                raise ValueError(f"secret pattern names must be identifiers, got {name!r}")
        alternatives = "|".join(f"(?P<{name}>{pattern})" for name, pattern in patterns.items())
        self._pattern = re.compile(alternatives)
        self._names = tuple(patterns)
        self._then = then

    def __call__(self, message: Message) -> Message:
        masked = self._masked(message)
        return self._then(masked) if self._then is not None else masked

    def redact_text(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED:<kind>]``."""
        return self._pattern.sub(self._replacement, text)

    def _replacement(self, match: re.Match[str]) -> str:
        # The first of our named groups that matched (an extra pattern may hold groups of its own).
        kind = next(name for name in self._names if match.group(name) is not None)
        return f"[REDACTED:{kind}]"

    def _masked(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, str):
            return value if key in _KEEP_KEYS else self.redact_text(value)
        if isinstance(value, Mapping):
            return {k: self._masked(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._masked(item) for item in value]
        return value


redact_secrets: Callable[[Message], Message] = SecretRedactor()
"""The shipped redactor: ``setup(redact=llm_otel.redact_secrets)``."""
