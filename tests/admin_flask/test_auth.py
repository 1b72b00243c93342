"""Who may use the admin: every route for anonymous, non-admin and admin users of a host app, the
standalone token login, and no token in the logs."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
import simple_websocket
from flask import Flask, session

from admin_flask import AdminConfigurationError, LLMAdmin, create_app
from tests.admin_flask.conftest import API, TOKEN, Admin, Running, Store
from tests.children import REPO


def host_app(store: Store, **options: Any) -> Flask:
    """A host app with its own login (``/sign-in/<user>``); ``root`` is its only admin."""
    app = Flask("host")
    app.secret_key = "host-app-secret"

    @app.get("/sign-in/<user>")
    def sign_in(user: str) -> str:
        session["user"] = user
        return "signed in"

    def authorize() -> bool | None:
        user = session.get("user")
        return None if user is None else user == "root"

    LLMAdmin(app, db=store.url, authorize=authorize, **options)
    return app


def admin_urls(app: Flask, store: Store) -> list[tuple[str, str]]:
    """(kind, path) of every admin route of ``app``: ``http`` or ``ws``, its arguments filled in."""
    values = {
        "call_id": store.manifest.calls["failed"],
        "task_id": "job-42",
        "path": "no/such/route",
        "filename": "css/admin.css",
    }
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("llm_otel_admin"):
            continue
        if rule.endpoint.endswith(".static"):
            continue  # the page's scripts and styles are public: tested below
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(rf"<(?:\w+:)?{name}>", values[name], path)  # <name>, <path:name>, <any_text:name>
        if rule.endpoint.endswith(".events"):
            path += "?timeout=0"
        urls.append(("ws" if rule.websocket else "http", path))
    return sorted(set(urls))


def answer(running: Running, kind: str, path: str, client: httpx2.Client) -> int:
    if kind == "http":
        return client.get(path).status_code
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    try:
        ws = running.ws(path, {"Cookie": cookie} if cookie else None)
    except simple_websocket.ConnectionError as refused:
        return refused.status_code
    ws.close()
    return 101


@pytest.mark.parametrize(("user", "expected"), [(None, 401), ("guest", 403), ("root", 200)])
def test_every_route_for_anonymous_non_admin_and_admin(
    serve: Any, store: Store, user: str | None, expected: int
) -> None:
    app = host_app(store)
    running = serve(app)
    client = running.http()
    if user is not None:
        assert client.get(f"/sign-in/{user}").status_code == 200
    urls = admin_urls(app, store)
    kinds = {kind for kind, _ in urls}
    assert kinds == {"http", "ws"} and len(urls) >= 11, urls
    for kind, path in urls:
        status = answer(running, kind, path, client)
        if expected == 200:
            unknown = "no/such/route" in path or path == API + "/"  # the catch-all answers 404
            wanted = {"ws": 101}.get(kind, 404 if unknown else 200)
        else:
            wanted = expected
        assert status == wanted, (kind, path, status)
        if kind == "http" and path.startswith(API) and expected != 200:
            body = client.get(path).json()
            assert body["error"]["code"] == {401: "unauthenticated", 403: "forbidden"}[expected]


def test_the_page_sends_anonymous_visitors_to_the_host_login(serve: Any, store: Store) -> None:
    running = serve(host_app(store, url_prefix="/ops/llm"))
    anonymous = running.http()
    assert anonymous.get("/ops/llm/").status_code == 401  # no login URL configured
    app = Flask("host-with-login")
    app.secret_key = "x"
    app.config["LLM_OTEL_ADMIN_LOGIN_URL"] = "/accounts/login"
    LLMAdmin(app, db=store.url, authorize=lambda: None)
    with app.test_client() as client:
        response = client.get("/admin/jobs/?tab=llm")
        assert response.status_code == 303
        assert response.headers["Location"] == "/accounts/login?next=%2Fadmin%2Fjobs%2F%3Ftab%3Dllm"


def test_the_page_files_are_public_and_the_api_prefix_follows_the_page(serve: Any, store: Store) -> None:
    app = host_app(store, url_prefix="/ops/llm")
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    assert rules["llm_otel_admin_api.calls"] == "/api/ops/llm/llm/calls"
    static = [
        rule for endpoint, rule in rules.items() if endpoint.endswith(".static") and rule.startswith("/ops")
    ]
    if static:  # the page ships its files: scripts and styles need no login (they hold no data)
        running = serve(app)
        response = running.http().get("/ops/llm/static/does-not-exist.js")
        assert response.status_code == 404  # not 401: the guard lets static files through


def test_the_standalone_app_sends_the_headers_everywhere(admin: Admin) -> None:
    for path in ("/", "/favicon.ico", "/admin/jobs/login", "/admin/jobs/"):
        response = admin.anonymous.get(path)
        assert response.headers["cache-control"] == "no-store", path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
    assert admin.anonymous.get("/").headers["location"] == "/admin/jobs/"


def test_bearer_token(admin: Admin) -> None:
    assert admin.get("/llm/calls").status_code == 200
    wrong = admin.http({"Authorization": "Bearer not-the-token"}).get(API + "/llm/calls")
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert admin.http({"Authorization": f"Basic {TOKEN}"}).get(API + "/llm/calls").status_code == 401
    assert admin.anonymous.get(API + "/llm/calls").status_code == 401
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        admin.ws(f"{API}/llm/ws", {"Authorization": "Bearer nope"})
    assert refused.value.status_code == 401


def test_login_page_cookie_and_logout(admin: Admin) -> None:
    browser = admin.http(follow_redirects=False)
    page = browser.get("/admin/jobs/")
    assert page.status_code == 303
    login = urlsplit(page.headers["location"])
    assert login.path == "/admin/jobs/login" and parse_qs(login.query) == {"next": ["/admin/jobs/"]}
    form = browser.get(page.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text and "<script" not in form.text
    assert "default-src 'self'" in form.headers["content-security-policy"]
    refused = browser.post("/admin/jobs/login", data={"token": "wrong", "next": "/admin/jobs/"})
    assert refused.status_code == 401 and "not the admin token" in refused.text
    assert browser.get(API + "/llm/calls").status_code == 401
    accepted = browser.post("/admin/jobs/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/admin/jobs/"  # never off-site
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert browser.get(API + "/llm/calls").status_code == 200
    live = admin.ws(f"{API}/llm/ws", {"Cookie": f"llm_otel_admin={browser.cookies['llm_otel_admin']}"})
    live.close()
    assert browser.post("/admin/jobs/logout").status_code == 303
    assert browser.get(API + "/llm/calls").status_code == 401


def test_a_tampered_or_stale_cookie_is_refused(admin: Admin, store: Store, serve: Any) -> None:
    browser = admin.http()
    browser.post("/admin/jobs/login", data={"token": TOKEN})
    cookie = browser.cookies["llm_otel_admin"]
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    forged = admin.http({"Cookie": f"llm_otel_admin={tampered}"})
    assert forged.get(API + "/llm/calls").status_code == 401
    # Another admin process with the same token (a second worker) takes the cookie; a new token does not.
    same = serve(create_app(db=store.url, token=TOKEN))
    assert same.http({"Cookie": f"llm_otel_admin={cookie}"}).get(API + "/llm/calls").status_code == 200
    secret = {"LLM_OTEL_ADMIN_SECRET_KEY": "shared-secret"}
    first = serve(create_app(db=store.url, token="first-token", config=secret))
    second = serve(create_app(db=store.url, token="second-token", config=secret))
    browser = first.http()
    browser.post("/admin/jobs/login", data={"token": "first-token"})
    old = browser.cookies["llm_otel_admin"]
    assert second.http({"Cookie": f"llm_otel_admin={old}"}).get(API + "/llm/calls").status_code == 401


def test_the_login_link_logs_in_once_and_the_token_stays_out_of_the_logs(
    store: Store, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(db=store.url)  # no token: one is made and the login link logged once
    startup = [record for record in caplog.records if "token=" in record.getMessage()]
    assert len(startup) == 1 and startup[0].levelno == logging.WARNING
    link = re.search(r"(/admin/jobs/\?token=([\w-]+))", startup[0].getMessage())
    assert link is not None
    path, token = link.groups()
    running = serve(app)
    browser = running.http(follow_redirects=False)
    response = browser.get(path + "&tab=llm")
    assert response.status_code == 303 and response.headers["location"] == "/admin/jobs/?tab=llm"
    assert browser.get(API + "/llm/calls").status_code == 200  # the session cookie
    assert running.http({"Authorization": f"Bearer {token}"}).get(API + "/llm/calls").status_code == 200
    assert running.http().get("/admin/jobs/?token=wrong").status_code == 401
    # What the admin process logs (the test's own HTTP client logs its requests too: not the server's).
    lines = [record.getMessage() for record in caplog.records if not record.name.startswith("httpx")]
    assert any("token=[redacted]" in line for line in lines), lines  # Werkzeug logged the request...
    assert [line for line in lines if token in line] == [startup[0].getMessage()]  # ...without the token


def test_misconfiguration_is_refused_clearly(store: Store) -> None:
    app = Flask("twice")
    LLMAdmin(app, db=store.url, authorize=lambda: True)
    with pytest.raises(RuntimeError, match="already registered"):
        LLMAdmin(app, db=store.url, authorize=lambda: True)
    with pytest.raises(AdminConfigurationError, match=r"authorize=.*LLM_OTEL_ADMIN_TOKEN"):
        LLMAdmin(Flask("nobody"), db=store.url)
    with pytest.raises(AdminConfigurationError, match="authorize must be a callable"):
        LLMAdmin(authorize="admins")  # type: ignore[arg-type]
    for key, value in (
        ("LLM_OTEL_ADMIN_POLL_INTERVAL_S", "fast"),
        ("LLM_OTEL_ADMIN_FEED_BUFFER", 0),
        ("LLM_OTEL_ADMIN_PREFIX", "/"),
        ("LLM_OTEL_ADMIN_TASK_URL", "/tasks/"),
        ("LLM_OTEL_ADMIN_COOKIE_SECURE", "maybe"),
    ):
        with pytest.raises(AdminConfigurationError, match=key):
            create_app(db=store.url, token=TOKEN, config={key: value})


def test_importing_without_flask_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["flask_sock"] = None  # as if flask-sock were not installed
        try:
            import admin_flask
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert "pip install 'llm-otel[admin]'" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("task_url", "expected"),
    [
        ("/jobs/{task_id}/view", "/jobs/job-42/view"),
        (lambda task_id: f"https://ops.example/tasks?id={task_id}", "https://ops.example/tasks?id=job-42"),
    ],
    ids=["template", "callable"],
)
def test_a_host_app_points_the_task_link_at_its_own_page(
    serve: Any, store: Store, task_url: Any, expected: str
) -> None:
    running = serve(host_app(store, task_url=task_url))
    client = running.http()
    client.get("/sign-in/root")
    call = client.get(f"{API}/llm/calls/{store.manifest.calls['multi_turn']}").json()
    assert call["task"]["task_id"] == "job-42" and call["task"]["url"] == expected
    state = running.state
    assert state.task_url == (task_url if isinstance(task_url, str) else None)
    assert (state.api_prefix, state.page_prefix, state.standalone) == (API, "/admin/jobs", False)


def test_every_route_refuses_a_wrong_token_and_a_tampered_or_stale_cookie(store: Store, serve: Any) -> None:
    config = {"LLM_OTEL_ADMIN_LOGIN_ATTEMPTS": 0, "LLM_OTEL_ADMIN_SECRET_KEY": "shared-secret"}
    app = create_app(db=store.url, token=TOKEN, config=config)  # no back-off: every guess is answered
    running = serve(app)
    browser = running.http()
    browser.post("/admin/jobs/login", data={"token": TOKEN})
    cookie = browser.cookies["llm_otel_admin"]
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    other = serve(create_app(db=store.url, token="an-earlier-token", config=config)).http()
    other.post("/admin/jobs/login", data={"token": "an-earlier-token"})
    stale = other.cookies["llm_otel_admin"]  # signed with the same key, for another token
    clients = {
        "wrong token": running.http({"Authorization": "Bearer not-the-token"}),
        "tampered cookie": running.http({"Cookie": f"llm_otel_admin={tampered}"}),
        "stale cookie": running.http({"Cookie": f"llm_otel_admin={stale}"}),
    }
    urls = [(kind, path) for kind, path in admin_urls(app, store) if path.startswith(API)]
    assert {kind for kind, _ in urls} == {"http", "ws"} and len(urls) >= 11, urls
    for who, client in clients.items():
        for kind, path in urls:
            if kind == "ws":
                header = client.headers.get("authorization")
                headers = {"Authorization": header} if header else {"Cookie": client.headers["cookie"]}
                with pytest.raises(simple_websocket.ConnectionError) as refused:
                    running.ws(path, headers)
                assert refused.value.status_code == 401, (who, path)
                continue
            response = client.get(path)
            assert response.status_code == 401, (who, path, response.status_code)
            assert response.json()["error"]["code"] == "unauthenticated", (who, path)
        page = client.get("/admin/jobs/", follow_redirects=False)  # the page: to the login form
        assert page.status_code == 303 and urlsplit(page.headers["location"]).path == "/admin/jobs/login", who
    assert browser.get(API + "/llm/calls").status_code == 200  # the real cookie still works
