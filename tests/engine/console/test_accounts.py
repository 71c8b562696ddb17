"""Console accounts: the `ketqua users` command, login, sessions, anti-forgery tokens, throttling, roles, audit."""

from __future__ import annotations

import io
import sys
from datetime import timedelta

import pytest

from engine.cli import main
from engine.console import console_state
from engine.console.passwords import PasswordError, hash_password, verify_password
from engine.console.store import ConsoleStore
from engine.ledger import Ledger
from tests.engine.console.world import (
    FAST,
    NOW,
    PASSWORD,
    ConsoleWorld,
    console_client,
    csrf_of,
    log_in,
    run,
)


def _users_cli(world: ConsoleWorld, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["--data", str(world.data.root), "users", *args])


def test_users_add_list_disable(world: ConsoleWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua users add --password-stdin` stores an Argon2id hash; list shows it; disable ends it."""
    assert _users_cli(world, monkeypatch, "add", "Nguyen.Thu", "--role", "reviewer", "--password-stdin", stdin="a long passphrase\n") == 0
    with Ledger.open(world.data.ledger) as ledger:
        row = ConsoleStore(ledger).user("nguyen.thu")
    assert row is not None and row["role"] == "reviewer"
    assert row["password_hash"].startswith("$argon2id$") and "a long passphrase" not in row["password_hash"]
    assert verify_password(row["password_hash"], "a long passphrase")
    capsys.readouterr()
    assert _users_cli(world, monkeypatch, "list") == 0
    listed = capsys.readouterr().out
    assert "nguyen.thu" in listed and "reviewer" in listed and "argon2" not in listed
    assert _users_cli(world, monkeypatch, "disable", "nguyen.thu") == 0
    capsys.readouterr()
    _users_cli(world, monkeypatch, "list")
    assert "disabled" in [line for line in capsys.readouterr().out.splitlines() if line.startswith("nguyen.thu")][0]


def test_users_add_refuses_weak_password_taken_name_and_bad_role(world: ConsoleWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A short password, an existing name and an unknown role are refused with a reason, nothing created."""
    assert _users_cli(world, monkeypatch, "add", "newbie", "--role", "technician", "--password-stdin", stdin="short\n") == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert _users_cli(world, monkeypatch, "add", "tech", "--role", "technician", "--password-stdin", stdin="long enough password\n") == 1
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _users_cli(world, monkeypatch, "add", "x1", "--role", "janitor", "--password-stdin", stdin="long enough password\n")
    with Ledger.open(world.data.ledger) as ledger:
        assert ConsoleStore(ledger).user("newbie") is None


def test_password_hash_is_salted_and_checked() -> None:
    """Two hashes of one password differ (salt); a wrong password fails; too short is refused."""
    a, b = hash_password("one two three four", FAST), hash_password("one two three four", FAST)
    assert a != b and verify_password(a, "one two three four", FAST) and not verify_password(a, "one two three five", FAST)
    with pytest.raises(PasswordError):
        hash_password("2short", FAST)


def test_login_sets_a_strict_httponly_cookie_and_audits(world: ConsoleWorld) -> None:
    """A good login redirects with an HttpOnly SameSite=Strict session cookie; the session is in the ledger; audited."""

    async def go() -> None:
        async with console_client(world) as client:
            response = await log_in(client, "tech")
            assert response.status == 303 and response.headers["Location"] == "/console/"
            cookie = response.cookies["kq_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]  # plain HTTP here
            page = await client.get("/console/")
            assert page.status == 200 and "tech" in await page.text()
            store = console_state(client.server.app).store
            sessions = store.conn.execute("SELECT id_hash FROM console_sessions").fetchall()
            assert len(sessions) == 1 and sessions[0][0] != cookie.value  # only the hash is stored
            assert [r["action"] for r in store.audit_trail()][0] == "login"

    run(go())


def test_wrong_password_unknown_user_and_disabled_user_are_refused(world: ConsoleWorld) -> None:
    """Wrong password, unknown name, disabled account and the collector role all get the same refusal."""

    async def go() -> None:
        async with console_client(world) as client:
            for user, password in (("tech", "wrong password!"), ("nobody", PASSWORD), ("col", PASSWORD)):
                response = await log_in(client, user, password)
                assert response.status == 401 and "không đúng" in await response.text()
                assert "kq_session" not in response.cookies
            console_state(client.server.app).store.disable_user("rev")
            assert (await log_in(client, "rev")).status == 401

    run(go())


def test_login_is_throttled_after_repeated_failures(world: ConsoleWorld) -> None:
    """After login_max_failures failures for a name, even the right password is refused until the window passes."""

    async def go() -> None:
        async with console_client(world, login_max_failures=3) as client:
            for _ in range(3):
                assert (await log_in(client, "tech", "wrong password!")).status == 401
            blocked = await log_in(client, "tech")
            assert blocked.status == 429 and "Quá nhiều" in await blocked.text()
            state = console_state(client.server.app)
            state.clock = lambda: NOW + timedelta(minutes=16)
            assert (await log_in(client, "tech")).status == 303
            actions = [r["action"] for r in state.store.audit_trail()]
            assert actions.count("login_failed") == 3 and "login_throttled" in actions

    run(go())


def test_post_without_valid_csrf_token_is_refused(world: ConsoleWorld) -> None:
    """A POST with no or a wrong csrf_token is a 403 and does nothing (login and logged-in forms alike)."""

    async def go() -> None:
        async with console_client(world) as client:
            await client.get("/console/login")
            refused = await client.post("/console/login", data={"username": "tech", "password": PASSWORD}, allow_redirects=False)
            assert refused.status == 403 and "kq_session" not in refused.cookies
            await log_in(client, "tech")
            sha = console_state(client.server.app).store.quarantined()[0]["sha256"]
            for token in ("", "0" * 64):
                response = await client.post(f"/console/quarantine/{sha}/dismiss", data={"reason": "x", "csrf_token": token})
                assert response.status == 403
            assert console_state(client.server.app).store.quarantined()[0]["sha256"] == sha  # not dismissed
            assert "csrf_refused" in [r["action"] for r in console_state(client.server.app).store.audit_trail()]

    run(go())


def test_every_page_needs_a_session(world: ConsoleWorld) -> None:
    """Without a session each console page redirects to the login form (never shows data)."""

    async def go() -> None:
        async with console_client(world) as client:
            for path in ("/console/", "/console/quarantine", "/console/search?q=nguyen", "/console/retests", "/console/retests.csv",
                         "/console/plates", "/console/incomplete", "/console/audit", "/console/corrections", "/console/live"):
                response = await client.get(path, allow_redirects=False)
                assert response.status == 303 and response.headers["Location"].startswith("/console/login"), path
            assert (await client.post("/console/logout", allow_redirects=False)).status == 303

    run(go())


@pytest.mark.parametrize(
    ("user", "allowed", "forbidden"),
    [
        ("tech", ["/console/", "/console/retests", "/console/incomplete"], ["/console/audit", "/console/corrections"]),
        ("rev", ["/console/", "/console/corrections"], ["/console/audit"]),
        ("boss", ["/console/", "/console/audit", "/console/corrections"], []),
    ],
)
def test_roles_are_enforced_on_the_server(world: ConsoleWorld, user: str, allowed: list[str], forbidden: list[str]) -> None:
    """Each role sees its pages and gets 403 on the others, whatever links it is shown."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, user)
            for path in allowed:
                assert (await client.get(path)).status == 200, path
            for path in forbidden:
                assert (await client.get(path)).status == 403, path

    run(go())


def test_session_ends_on_logout_idle_and_disable(world: ConsoleWorld) -> None:
    """Logout, idle_minutes without a request and a disabled account each end the session."""

    async def go() -> None:
        async with console_client(world) as client:
            state = console_state(client.server.app)
            await log_in(client, "tech")
            page = await client.get("/console/")
            token = csrf_of(await page.text())
            await client.post("/console/logout", data={"csrf_token": token})
            assert (await client.get("/console/", allow_redirects=False)).status == 303
            await log_in(client, "tech")
            state.clock = lambda: NOW + timedelta(minutes=31)
            assert (await client.get("/console/", allow_redirects=False)).status == 303
            await log_in(client, "rev")
            assert (await client.get("/console/", allow_redirects=False)).status == 200
            state.store.disable_user("rev")
            assert (await client.get("/console/", allow_redirects=False)).status == 303

    run(go())


def test_security_headers_and_language_switch(world: ConsoleWorld) -> None:
    """Every page has a CSP without inline script and no-store; the English switch sticks and stays local."""

    async def go() -> None:
        async with console_client(world) as client:
            page = await client.get("/console/login")
            csp = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert page.headers["Cache-Control"] == "no-store" and "<script>" not in (await page.text()).replace('<script src="/console/static/console.js" defer></script>', "")
            switched = await client.get("/console/lang?to=en&next=/console/login", allow_redirects=False)
            assert switched.headers["Location"] == "/console/login"
            assert "Log in" in await (await client.get("/console/login")).text()
            away = await client.get("/console/lang?to=en&next=https://evil.example/", allow_redirects=False)
            assert away.headers["Location"] == "/console/"
            static = await client.get("/console/static/console.css")
            assert static.status == 200 and static.headers["Content-Security-Policy"] == csp

    run(go())


def test_api_routes_still_need_their_token(world: ConsoleWorld) -> None:
    """Mounting the console opens no /v1 route: the feed still answers 401 without a bearer token."""

    async def go() -> None:
        async with console_client(world) as client:
            assert (await client.get("/v1/results")).status == 401
            assert (await client.get("/v1/health")).status == 200

    run(go())


def test_console_settings_are_checked_with_the_rest_of_ketqua_toml(world: ConsoleWorld) -> None:
    """[console] keys are read from ketqua.toml; a wrong value or unknown key is refused by name at start."""
    from engine.config import read_config_file
    from engine.console.settings import console_settings
    from engine.errors import ConfigError

    world.data.config.write_text('[console]\ncorrections_need_review = true\nidle_minutes = 45\nlanguage = "en"\n', encoding="utf-8")
    settings = console_settings(world.data)
    assert settings.corrections_need_review and settings.idle_minutes == 45.0 and settings.language == "en"
    world.data.config.write_text('[console]\nlanguage = "fr"\ntimezone = "Mars/Olympus"\nidle_minuts = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(world.data)
    text = str(caught.value)
    assert "[console] language" in text and "[console] timezone" in text and "did you mean idle_minutes" in text


def test_console_can_be_switched_off(world: ConsoleWorld) -> None:
    """[console] enabled = false: no /console/ route at all (404 from the API)."""
    from engine.pipeline.service import server_app

    world.data.config.write_text("[console]\nenabled = false\n", encoding="utf-8")
    app = server_app(world.data)
    assert not any(r.canonical.startswith("/console") for r in app.router.resources())
