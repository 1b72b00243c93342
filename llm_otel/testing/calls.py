"""What the fake server remembers about each request it received."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .behavior import Behavior


@dataclass(frozen=True)
class RecordedCall:
    """One request and what was answered.

    - ``headers``: every request header, lower-case names (including ``authorization``).
    - ``body``: the parsed JSON body, or ``None`` (no body, or not JSON).
    - ``behavior``: the ``Behavior`` applied; ``None`` when none applies (the models list,
      unknown paths, requests refused as invalid).
    - ``status``: the HTTP status sent (a dropped stream still counts as 200).
    - ``usage``: the usage object exactly as sent in the body, the usage chunk or the
      ``response.completed`` event; ``None`` when none was sent (errors, a stream without
      ``include_usage``, a dropped stream).
    - ``response_id``: the ``id`` of the completion or response, else ``None``.
    - ``retry_count``: the SDK's ``x-stainless-retry-count`` header (0 on a first attempt).
    """

    path: str
    method: str
    headers: dict[str, str]
    body: Any
    behavior: Behavior | None
    status: int
    usage: dict[str, Any] | None
    response_id: str | None
    retry_count: int | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_fake/calls``."""
        return {
            "path": self.path,
            "method": self.method,
            "headers": self.headers,
            "body": self.body,
            "behavior": self.behavior.to_dict() if self.behavior else None,
            "status": self.status,
            "usage": self.usage,
            "response_id": self.response_id,
            "retry_count": self.retry_count,
        }
