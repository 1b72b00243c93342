"""The token login's back-off: wrong tokens from one address make it wait (429 + Retry-After), on the
API, the websocket handshake, the login form and the login link; a right token resets it; a session
already issued is never held back; no token reaches a log line.

The back-off's clock is the test's: waiting out ``Retry-After`` moves it (no sleep, and no load can
make a wait end early)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import simple_websocket

from admin_flask import AdminConfigurationError, create_app
from admin_flask.auth import BACKOFF_KEY
from admin_flask.login_backoff import LoginBackoff, TooManyAttempts
from tests.admin_flask.conftest import API, FAST_FEED, TOKEN, Admin, Store

ATTEMPTS = 3
BACKOFF = {
    "LLM_OTEL_ADMIN_LOGIN_ATTEMPTS": ATTEMPTS,
    "LLM_OTEL_ADMIN_LOGIN_BACKOFF_S": 1.0,
    "LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S": 1.0,
}
WRONG = [f"wrong-guess-{number}-7d1f" for number in range(10)]


class Clock:
    """A clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def admin(store: Store, serve: Any, clock: Clock) -> Admin:
    """The admin with its back-off on ``clock``, which moves only when a test waits out a
    ``Retry-After``: on a loaded machine, more than the wait could pass between two requests."""
    app = create_app(db=store.url, token=TOKEN, config={**FAST_FEED, **BACKOFF})
    app.extensions[BACKOFF_KEY]._clock = clock
    return serve(app, Admin)


def calls_with(admin: Admin, token: str) -> Any:
    return admin.http({"Authorization": f"Bearer {token}"}).get(API + "/llm/calls")


def wait_out(clock: Clock, response: Any) -> None:
    """Let pass what ``Retry-After`` says (whole seconds)."""
    clock.now += int(response.headers["retry-after"])


def test_wrong_bearer_tokens_make_the_address_wait(admin: Admin, clock: Clock) -> None:
    document = admin.json("/llm/openapi.json")
    assert "429" in document["paths"]["/llm/calls"]["get"]["responses"]  # the answer is documented
    for guess in WRONG[:ATTEMPTS]:
        assert calls_with(admin, guess).status_code == 401
    refused = calls_with(admin, TOKEN)  # the right token too: it is not even compared while waiting
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "too_many_attempts"
    assert "try again in" in refused.json()["error"]["message"]
    with pytest.raises(simple_websocket.ConnectionError) as handshake:
        admin.ws(f"{API}/llm/ws", {"Authorization": f"Bearer {TOKEN}"})
    assert handshake.value.status_code == 429  # the websocket handshake is held back the same way
    wait_out(clock, refused)
    assert calls_with(admin, TOKEN).status_code == 200
    # The success reset the count: as many wrong tokens again are answered 401, not 429.
    for guess in WRONG[: ATTEMPTS - 1]:
        assert calls_with(admin, guess).status_code == 401
    assert calls_with(admin, TOKEN).status_code == 200


def test_a_wrong_token_after_the_wait_makes_it_wait_again(admin: Admin, clock: Clock) -> None:
    for guess in WRONG[:ATTEMPTS]:
        assert calls_with(admin, guess).status_code == 401
    refused = calls_with(admin, WRONG[ATTEMPTS])  # refused while waiting: not counted, not compared
    assert refused.status_code == 429
    wait_out(clock, refused)
    assert calls_with(admin, WRONG[ATTEMPTS]).status_code == 401  # one more try, wrong again
    assert calls_with(admin, TOKEN).status_code == 429


def test_the_login_form_and_link_say_why_they_wait(admin: Admin, clock: Clock) -> None:
    browser = admin.http(follow_redirects=False)
    for guess in WRONG[:ATTEMPTS]:
        refused = browser.post("/admin/jobs/login", data={"token": guess, "next": "/admin/jobs/?tab=llm"})
        assert refused.status_code == 401 and "not the admin token" in refused.text
    waiting = browser.post("/admin/jobs/login", data={"token": TOKEN, "next": "/admin/jobs/?tab=llm"})
    assert waiting.status_code == 429 and int(waiting.headers["retry-after"]) >= 1
    assert "Too many wrong tokens were sent from your address. Try again in" in waiting.text
    assert (
        'name="token"' in waiting.text and 'value="/admin/jobs/?tab=llm"' in waiting.text
    )  # the form, again
    assert "llm_otel_admin" not in browser.cookies
    link = browser.get(f"/admin/jobs/?token={TOKEN}")
    assert link.status_code == 429 and "Try again in" in link.text
    wait_out(clock, waiting)
    accepted = browser.post("/admin/jobs/login", data={"token": TOKEN, "next": "/admin/jobs/?tab=llm"})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/admin/jobs/?tab=llm"


def test_a_session_already_issued_is_never_held_back(admin: Admin) -> None:
    browser = admin.http()
    assert browser.post("/admin/jobs/login", data={"token": TOKEN}).status_code == 303
    for guess in WRONG[:ATTEMPTS]:
        assert calls_with(admin, guess).status_code == 401
    assert calls_with(admin, TOKEN).status_code == 429  # the address waits for token logins...
    assert browser.get(API + "/llm/calls").status_code == 200  # ...not the admin already logged in
    assert browser.get("/admin/jobs/").status_code == 200


def test_no_token_in_any_log_line(admin: Admin, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser = admin.http(follow_redirects=False)
    for guess in WRONG[:ATTEMPTS]:
        browser.get(f"/admin/jobs/?token={guess}")
    waiting = calls_with(admin, TOKEN)
    assert waiting.status_code == 429
    browser.post("/admin/jobs/login", data={"token": WRONG[5]})
    wait_out(clock, waiting)
    assert browser.get(f"/admin/jobs/?token={TOKEN}").status_code == 303
    # What the admin process logs (the test's own HTTP client logs its requests too: not the server's).
    lines = [record.getMessage() for record in caplog.records if not record.name.startswith("httpx")]
    assert any("refuses token logins from 127.0.0.1" in line for line in lines), lines
    assert any("token=[redacted]" in line for line in lines), lines
    secrets = [TOKEN, *WRONG]
    assert [line for line in lines if any(secret in line for secret in secrets)] == []


def test_the_back_off_can_be_turned_off(store: Store, serve: Any) -> None:
    config = {**FAST_FEED, "LLM_OTEL_ADMIN_LOGIN_ATTEMPTS": 0}
    admin = serve(create_app(db=store.url, token=TOKEN, config=config), Admin)
    for guess in WRONG:
        assert calls_with(admin, guess).status_code == 401
    assert calls_with(admin, TOKEN).status_code == 200


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LLM_OTEL_ADMIN_LOGIN_ATTEMPTS", -1),
        ("LLM_OTEL_ADMIN_LOGIN_ATTEMPTS", "some"),
        ("LLM_OTEL_ADMIN_LOGIN_BACKOFF_S", -0.5),
        ("LLM_OTEL_ADMIN_LOGIN_BACKOFF_S", 0),  # no wait: the back-off off without a word
        ("LLM_OTEL_ADMIN_LOGIN_BACKOFF_S", "nan"),
        ("LLM_OTEL_ADMIN_LOGIN_WINDOW_S", 0),  # every wrong token forgotten at once: off too
        ("LLM_OTEL_ADMIN_LOGIN_BACKOFF_MAX_S", 0.5),  # shorter than the first wait (1 s)
        ("LLM_OTEL_ADMIN_LOGIN_WINDOW_S", "long"),
    ],
)
def test_bad_back_off_settings_are_refused(store: Store, key: str, value: object) -> None:
    with pytest.raises(AdminConfigurationError, match=key) as refused:
        create_app(db=store.url, token=TOKEN, config={key: value})
    if value == 0:  # the message names the switch that does turn it off
        assert "LLM_OTEL_ADMIN_LOGIN_ATTEMPTS=0" in str(refused.value)


def waits(backoff: LoginBackoff, address: str) -> int | None:
    try:
        backoff.check(address)
    except TooManyAttempts as wait:
        return wait.retry_after_s
    return None


def test_the_wait_doubles_up_to_its_cap_and_a_success_resets_it() -> None:
    clock = Clock()
    backoff = LoginBackoff(attempts=2, backoff_s=1.0, backoff_max_s=5.0, window_s=60.0, clock=clock)
    seen = []
    for _ in range(6):
        backoff.failed("10.0.0.1")
        seen.append(waits(backoff, "10.0.0.1"))
        clock.now += 10  # past any wait, inside the window
    assert seen == [None, 1, 2, 4, 5, 5]
    assert waits(backoff, "10.0.0.2") is None  # another address is not affected
    backoff.succeeded("10.0.0.1")
    backoff.failed("10.0.0.1")
    assert waits(backoff, "10.0.0.1") is None


def test_wrong_tokens_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    backoff = LoginBackoff(attempts=2, backoff_s=1.0, backoff_max_s=5.0, window_s=60.0, clock=clock)
    backoff.failed("10.0.0.1")
    clock.now += 61
    backoff.failed("10.0.0.1")
    assert waits(backoff, "10.0.0.1") is None  # the first one was forgotten
    backoff.failed("10.0.0.1")
    assert waits(backoff, "10.0.0.1") == 1


def test_memory_stays_bounded_and_ipv6_counts_per_network() -> None:
    clock = Clock()
    backoff = LoginBackoff(
        attempts=2, backoff_s=1.0, backoff_max_s=5.0, window_s=60.0, tracked=100, clock=clock
    )
    for number in range(1000):
        backoff.failed(f"10.{number // 256}.{number % 256}.1")
        clock.now += 0.001
    assert len(backoff) == 100  # the oldest were forgotten first
    backoff.failed("2001:db8:1:2::1")
    backoff.failed("2001:db8:1:2:ffff::9")  # the same /64: one client
    assert waits(backoff, "2001:db8:1:2:abcd::5") == 1
    assert waits(backoff, "2001:db8:1:3::1") is None
    backoff.failed("::ffff:192.0.2.7")
    backoff.failed("192.0.2.7")  # IPv4-mapped is the IPv4 address
    assert waits(backoff, "192.0.2.7") == 1
    clock.now += 120
    backoff.failed("10.9.9.9")
    assert len(backoff) == 1  # the expired ones went
