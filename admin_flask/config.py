"""Every setting of the admin: its config key, default and meaning, in one place.

A host app sets the keys in ``app.config`` before ``init_app``; the standalone ``create_app()``
also reads each key from the environment variable of the same name. Keywords given to
``LLMAdmin(...)`` / ``create_app(...)`` win over the config, the config over the defaults.
docs/configuration.md lists the same table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class AdminConfigurationError(ValueError):
    """The admin was configured wrongly; the message names the key and what it accepts."""


def _text(value: object) -> str:
    return str(value)


def _float(value: object) -> float:
    return float(value)  # type: ignore[arg-type]


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)  # type: ignore[call-overload]


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not one of 1/true/yes/on, 0/false/no/off")


@dataclass(frozen=True)
class Setting:
    """One config key: its default (None: unset) and how a value (or environment text) is read."""

    key: str
    default: Any
    convert: Callable[[object], Any]
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "LLM_OTEL_DB",
        None,
        _text,
        "the store's URL, as for llm_otel.setup(); unset: the LLM_OTEL_DB environment variable, "
        "else sqlite:///llm_calls.db",
    ),
    Setting(
        "LLM_OTEL_ADMIN_TOKEN",
        None,
        _text,
        "the admin token (token login; used when no authorize callable is given); create_app() "
        "generates one when unset and logs a login link once",
    ),
    Setting(
        "LLM_OTEL_ADMIN_SECRET_KEY",
        None,
        _text,
        "create_app(): the key signing the session cookie; unset: derived from the token",
    ),
    Setting("LLM_OTEL_ADMIN_PREFIX", "/admin/jobs", _text, "URL prefix of the page, login and logout"),
    Setting(
        "LLM_OTEL_ADMIN_API_PREFIX",
        None,
        _text,
        "URL prefix of the JSON API and the websocket; unset: '/api' + LLM_OTEL_ADMIN_PREFIX",
    ),
    Setting(
        "LLM_OTEL_ADMIN_TASK_URL",
        None,
        _text,
        "link of a call's parent task: a template with {task_id}; unset: this admin's task view",
    ),
    Setting(
        "LLM_OTEL_ADMIN_LOGIN_URL",
        None,
        _text,
        "host app (authorize callable): where the page sends anonymous visitors (?next= is added); "
        "unset: a 401 page",
    ),
    Setting(
        "LLM_OTEL_ADMIN_COOKIE_SECURE",
        False,
        _bool,
        "create_app(): mark the session cookie Secure (set it when the admin is served over HTTPS)",
    ),
    Setting(
        "LLM_OTEL_ADMIN_STALE_AFTER_S",
        30.0,
        _float,
        "a scheduler whose heartbeat is older than this many seconds is listed as stale",
    ),
    Setting(
        "LLM_OTEL_ADMIN_BUSY_TIMEOUT_MS",
        5000,
        _int,
        "SQLite: how long a read waits for a lock before the API answers 503",
    ),
    Setting(
        "LLM_OTEL_ADMIN_POLL_INTERVAL_S",
        0.05,
        _float,
        "PostgreSQL: how often the live feed reads new events while clients are connected (on SQLite it "
        "asks every 5 ms whether another connection committed, every 50 ms after a second without "
        "events, and reads only then)",
    ),
    Setting(
        "LLM_OTEL_ADMIN_STATUS_INTERVAL_S", 5.0, _float, "how often the websocket sends an llm.status message"
    ),
    Setting(
        "LLM_OTEL_ADMIN_FEED_BUFFER",
        5000,
        _int,
        "live messages kept in memory for clients that reconnect (older ones are read from the store)",
    ),
    Setting(
        "LLM_OTEL_ADMIN_CLIENT_QUEUE",
        2000,
        _int,
        "messages waiting for one slow websocket client before it is sent llm.reset and closed",
    ),
    Setting(
        "LLM_OTEL_ADMIN_SEND_TIMEOUT_S",
        10.0,
        _float,
        "how long one websocket message may take to be written to a client before the client is cut off",
    ),
    Setting(
        "LLM_OTEL_ADMIN_LOGIN_ATTEMPTS",
        5,
        _int,
        "token login: wrong tokens one client address may send in a row before it must wait (0: no wait)",
    ),
    Setting(
        "LLM_OTEL_ADMIN_LOGIN_BACKOFF_S",
        1.0,
        _float,
        "token login: the first wait after those wrong tokens (> 0); it doubles with each further one",
    ),
    Setting(
        "LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S",
        30.0,
        _float,
        "token login: the longest wait",
    ),
    Setting(
        "LLM_OTEL_ADMIN_LOGIN_WINDOW_S",
        300.0,
        _float,
        "token login: a wrong token older than this is forgotten (> 0)",
    ),
)

DEFAULTS: dict[str, Any] = {setting.key: setting.default for setting in SETTINGS}
_BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class AdminSettings:
    """The settings of one app, checked."""

    db_url: str | None
    token: str | None
    secret_key: str | None
    page_prefix: str
    api_prefix: str
    task_url: str | None
    login_url: str | None
    cookie_secure: bool
    stale_after_s: float
    busy_timeout_ms: int
    poll_interval_s: float
    status_interval_s: float
    feed_buffer: int
    client_queue: int
    send_timeout_s: float
    login_attempts: int
    login_backoff_s: float
    login_backoff_max_s: float
    login_window_s: float


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keys set in the environment (create_app reads them), converted; bad values raise."""
    environ = os.environ if environ is None else environ
    return {key: _convert(key, environ[key]) for key in _BY_KEY if environ.get(key, "") != ""}


def read_settings(config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> AdminSettings:
    """The settings from ``config`` (a Flask app's config) and keyword ``overrides`` (None: unset)."""
    values = dict(DEFAULTS)
    values.update({key: config[key] for key in _BY_KEY if config.get(key) is not None})
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    values = {key: (None if value is None else _convert(key, value)) for key, value in values.items()}
    page_prefix = _prefix("LLM_OTEL_ADMIN_PREFIX", values["LLM_OTEL_ADMIN_PREFIX"])
    api_prefix = _prefix(
        "LLM_OTEL_ADMIN_API_PREFIX", values["LLM_OTEL_ADMIN_API_PREFIX"] or "/api" + page_prefix
    )
    if page_prefix == api_prefix:
        raise AdminConfigurationError(
            f"LLM_OTEL_ADMIN_PREFIX and LLM_OTEL_ADMIN_API_PREFIX are both {page_prefix!r}; the page and "
            "the API need different prefixes"
        )
    token = values["LLM_OTEL_ADMIN_TOKEN"]
    if token is not None and not token.strip():
        raise AdminConfigurationError("LLM_OTEL_ADMIN_TOKEN is empty; set a token or leave it unset")
    for key, minimum in (
        ("LLM_OTEL_ADMIN_STALE_AFTER_S", 0.0),
        ("LLM_OTEL_ADMIN_BUSY_TIMEOUT_MS", 0),
        ("LLM_OTEL_ADMIN_POLL_INTERVAL_S", 0.001),
        ("LLM_OTEL_ADMIN_STATUS_INTERVAL_S", 0.1),
        ("LLM_OTEL_ADMIN_FEED_BUFFER", 1),
        ("LLM_OTEL_ADMIN_CLIENT_QUEUE", 1),
        ("LLM_OTEL_ADMIN_SEND_TIMEOUT_S", 0.1),
        ("LLM_OTEL_ADMIN_LOGIN_ATTEMPTS", 0),
    ):
        if values[key] < minimum:
            raise AdminConfigurationError(f"{key} must be >= {minimum}, got {values[key]!r}")
    for key, zero in (
        ("LLM_OTEL_ADMIN_LOGIN_BACKOFF_S", "a wait of 0 s lets every guess through"),
        ("LLM_OTEL_ADMIN_LOGIN_WINDOW_S", "a window of 0 s forgets each wrong token at once"),
    ):
        if not values[key] > 0:  # NaN too
            raise AdminConfigurationError(
                f"{key} must be > 0, got {values[key]!r} ({zero}); to turn the token login's back-off "
                "off, set LLM_OTEL_ADMIN_LOGIN_ATTEMPTS=0"
            )
    if values["LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S"] < values["LLM_OTEL_ADMIN_LOGIN_BACKOFF_S"]:
        raise AdminConfigurationError(
            "LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S must be >= LLM_OTEL_ADMIN_LOGIN_BACKOFF_S, got "
            f"{values['LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S']!r} < {values['LLM_OTEL_ADMIN_LOGIN_BACKOFF_S']!r}"
        )
    task_url = values["LLM_OTEL_ADMIN_TASK_URL"]
    if task_url is not None and "{task_id}" not in task_url:
        raise AdminConfigurationError(
            f"LLM_OTEL_ADMIN_TASK_URL must contain {{task_id}}, e.g. '/tasks/{{task_id}}', got {task_url!r}"
        )
    return AdminSettings(
        db_url=values["LLM_OTEL_DB"],
        token=token.strip() if token else None,
        secret_key=values["LLM_OTEL_ADMIN_SECRET_KEY"],
        page_prefix=page_prefix,
        api_prefix=api_prefix,
        task_url=task_url,
        login_url=values["LLM_OTEL_ADMIN_LOGIN_URL"],
        cookie_secure=values["LLM_OTEL_ADMIN_COOKIE_SECURE"],
        stale_after_s=values["LLM_OTEL_ADMIN_STALE_AFTER_S"],
        busy_timeout_ms=values["LLM_OTEL_ADMIN_BUSY_TIMEOUT_MS"],
        poll_interval_s=values["LLM_OTEL_ADMIN_POLL_INTERVAL_S"],
        status_interval_s=values["LLM_OTEL_ADMIN_STATUS_INTERVAL_S"],
        feed_buffer=values["LLM_OTEL_ADMIN_FEED_BUFFER"],
        client_queue=values["LLM_OTEL_ADMIN_CLIENT_QUEUE"],
        send_timeout_s=values["LLM_OTEL_ADMIN_SEND_TIMEOUT_S"],
        login_attempts=values["LLM_OTEL_ADMIN_LOGIN_ATTEMPTS"],
        login_backoff_s=values["LLM_OTEL_ADMIN_LOGIN_BACKOFF_S"],
        login_backoff_max_s=values["LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S"],
        login_window_s=values["LLM_OTEL_ADMIN_LOGIN_WINDOW_S"],
    )


def _convert(key: str, value: object) -> Any:
    try:
        return _BY_KEY[key].convert(value)
    except (TypeError, ValueError) as exc:
        raise AdminConfigurationError(f"{key} = {value!r} is not valid: {exc}") from exc


def _prefix(key: str, value: str) -> str:
    """``/a/b`` form: one leading slash, no trailing slash; the empty string is refused."""
    prefix = "/" + value.strip().strip("/")
    if prefix == "/" or "//" in prefix or any(char in prefix for char in "?#<> \t\n"):
        raise AdminConfigurationError(f"{key} must be a path such as '/admin/jobs', got {value!r}")
    return prefix
