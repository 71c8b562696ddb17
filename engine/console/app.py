"""The lab console under ``/console/``: a sub-application of the API's aiohttp app.

Server-rendered pages (Jinja2, autoescaped), one stylesheet and one small
script served from this package: no external asset, no build step, no inline
script (the Content-Security-Policy forbids it), so it works on an offline lab
network, a low-end PC and a phone.

Security, in the order a request meets it (:func:`frame` then :func:`gate`):

- every response gets a strict CSP, ``no-store`` (pages hold personal data),
  ``nosniff``, ``no-referrer`` and ``frame-ancestors 'none'``;
- the session cookie (``kq_session``) is random, stored hashed in the ledger,
  ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the request came over TLS;
- every POST must carry a ``csrf_token`` form field equal to an HMAC of the
  session cookie (of a pre-login cookie on the login form) under a key kept in
  ``<data>/keys/console.key``; otherwise 403 and nothing happens;
- roles are checked on the server for every route (:data:`PERMISSIONS`);
- failed logins are counted in the audit trail; after ``login_max_failures``
  for one name (four times that from one address) within the window, logins
  are refused for the window;
- every action is appended to the audit trail (who, what, on what, when, from where).

Paths carry only ids (specimen, result, file hash), never a name or a national
id; the API's guard logs the route template only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from argon2 import PasswordHasher

from engine.config import load_config
from engine.console.i18n import MESSAGES, translator
from engine.console.passwords import DEFAULT_HASHER, burn_time, verify_password
from engine.console.settings import LANGUAGES, ConsoleSettings, console_settings
from engine.console.store import Clock, ConsoleStore, system_clock
from engine.datadir import DataDir
from engine.ledger.sqlite import Ledger
from engine.logs import log
from engine.results.signer import load_signer_spec
from signing.jws import jwks

HERE = Path(__file__).parent
PREFIX = "/console"
SESSION_COOKIE = "kq_session"
LOGIN_COOKIE = "kq_login"
LANG_COOKIE = "kq_lang"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

STAFF = frozenset({"technician", "reviewer", "admin"})
#: What each permission needs. ``collector`` (sampling station) has none of them.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": STAFF,
    "dismiss": STAFF,
    "correct": STAFF,
    "approve": frozenset({"reviewer", "admin"}),
    "release": frozenset({"reviewer", "admin"}),
    "audit": frozenset({"admin"}),
}

CONSOLE: Any = web.AppKey("ketqua_console", object)
# aiohttp ≥ 3.12 wants typed request keys; older versions take a plain string.
USER: Any = web.RequestKey("ketqua_console_user", dict) if hasattr(web, "RequestKey") else "ketqua_console_user"
CSRF: Any = web.RequestKey("ketqua_console_csrf", str) if hasattr(web, "RequestKey") else "ketqua_console_csrf"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_key(data: DataDir) -> bytes:
    """The HMAC key of the anti-forgery tokens, created once per data folder (0600)."""
    return data.secret_key("console.key")


class ConsoleState:
    """What the console's handlers share: its own ledger connection, settings, clock, keys."""

    def __init__(
        self,
        data: DataDir,
        ledger_path: Path,
        *,
        settings: ConsoleSettings | None = None,
        clock: Clock = system_clock,
        hasher: PasswordHasher = DEFAULT_HASHER,
    ) -> None:
        self.data = data
        self.ledger_path = ledger_path
        self.settings = settings or console_settings(data)
        self.config = load_config(data)
        self.hasher = hasher
        self.ledger = Ledger.open(ledger_path)
        self.store = ConsoleStore(self.ledger, clock)
        self.key = console_key(data)
        self._signer_spec: Any = None
        self._trust: Any = None

    @property
    def clock(self) -> Clock:
        return self.store.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self.store.clock = value

    def now(self) -> datetime:
        return self.store.clock()

    def csrf(self, cookie: str, purpose: str = "session") -> str:
        return hmac.new(self.key, f"{purpose}:{cookie}".encode(), hashlib.sha256).hexdigest()

    def signer_spec(self) -> Any:
        if self._signer_spec is None:
            self._signer_spec = load_signer_spec(self.data)
        return self._signer_spec

    def trust(self) -> Any:
        """The JWKS results are verified against on the pages (the configured signer's)."""
        if self._trust is None:
            self._trust = jwks(self.signer_spec().open())
        return self._trust

    def close(self) -> None:
        self.ledger.close()


def state_of(request: web.Request) -> ConsoleState:
    return request.config_dict[CONSOLE]  # type: ignore[no-any-return]


def client_of(request: web.Request) -> str | None:
    """The peer address (audit and throttling); a proxy's forwarded-for is not trusted."""
    return request.remote


# ---------------------------------------------------------------------- rendering
def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    """A page with the frame's values (translator, user, anti-forgery token, language) added."""
    state = state_of(request)
    language = language_of(request)
    user = request.get(USER)
    token = request.get(CSRF, "")
    base = {
        "t": translator(language),
        "has": lambda key: key in MESSAGES,
        "lang": language,
        "other_lang": "en" if language == "vi" else "vi",
        "user": user,
        "csrf_token": token,
        "can": lambda permission: bool(user) and user["role"] in PERMISSIONS[permission],
        "path": request.path_qs,
        "prefix": PREFIX,
        "settings": state.settings,
        "zone": state.settings.zone,
        "local": lambda text: local_time(text, state),
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def local_time(text: str | None, state: ConsoleState) -> str:
    """A ledger timestamp in the lab's time zone, to the second, as people read it."""
    if not text:
        return "—"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(state.settings.zone).strftime("%Y-%m-%d %H:%M:%S")


def language_of(request: web.Request) -> str:
    wanted = request.cookies.get(LANG_COOKIE)
    return wanted if wanted in LANGUAGES else state_of(request).settings.language


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, path=PREFIX + "/", httponly=True, samesite="Strict", secure=request.secure, max_age=max_age
    )


def local_next(target: str | None) -> str:
    """A redirect target that stays inside the console (no open redirect to another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


# ---------------------------------------------------------------------- middleware
@web.middleware
async def frame(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every response, and readable HTML error pages (never a trace)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(SECURITY_HEADERS)
            raise
        key = {403: "error.403", 404: "error.404"}.get(exc.status, "")
        response = render(request, "error.html", {"status": exc.status, "message_key": key, "detail": exc.text if not key else ""}, status=exc.status)
    except Exception as exc:  # noqa: BLE001 - a page fails alone, with the frames (not the message: it may hold personal data) in the log
        log.error("console page failed", route=_route(request), error=type(exc).__name__, frames="".join(traceback.format_tb(exc.__traceback__)))
        response = render(request, "error.html", {"status": 500, "message_key": "error.other", "detail": ""}, status=500)
    response.headers.update(SECURITY_HEADERS)
    return response


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


PUBLIC = {PREFIX + "/login", PREFIX + "/lang", PREFIX + "/static"}


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is asking (session cookie), whether a POST carries its anti-forgery token."""
    state = state_of(request)
    route = _route(request)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    session = state.store.session(cookie, idle_minutes=state.settings.idle_minutes) if cookie else None
    if session is not None:
        request[USER] = {"name": session["user"], "role": session["role"]}
        request[CSRF] = state.csrf(cookie)
    if route not in PUBLIC and route != "unmatched" and session is None:
        target = PREFIX + "/login"
        if request.method == "GET" and request.path != PREFIX + "/":
            target += "?next=" + quote(request.path_qs, safe="")
        raise web.HTTPSeeOther(target)
    if request.method == "POST":
        form = await request.post()
        sent = str(form.get("csrf_token", ""))
        if route == PREFIX + "/login":
            expected = state.csrf(request.cookies.get(LOGIN_COOKIE, ""), "login") if request.cookies.get(LOGIN_COOKIE) else ""
        else:
            expected = request.get(CSRF, "")
        if not expected or not hmac.compare_digest(sent, expected):
            state.store.audit(request[USER]["name"] if USER in request else None, "csrf_refused", route, client_of(request))
            return render(request, "error.html", {"status": 403, "message_key": "error.csrf", "detail": ""}, status=403)
    return await handler(request)


def require(permission: str) -> Callable[[Handler], Handler]:
    """A handler only a role holding ``permission`` may run (403 page otherwise)."""

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            user = request.get(USER)
            if user is None or user["role"] not in PERMISSIONS[permission]:
                raise web.HTTPForbidden()
            return await handler(request)

        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        return checked

    return wrap


# ---------------------------------------------------------------------- login, logout, language
async def login_form(request: web.Request, *, message: str = "", status: int = 200, values: dict[str, str] | None = None) -> web.Response:
    """The login page; sets the pre-login cookie its anti-forgery token is bound to."""
    state = state_of(request)
    pre = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    request[CSRF] = state.csrf(pre, "login")
    response = render(
        request, "login.html", {"message": message, "next": local_next(request.query.get("next")), "values": values or {}}, status=status
    )
    set_cookie(request, response, LOGIN_COOKIE, pre, max_age=3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Check a user name and password; throttled by failures per name and per address; every attempt audited."""
    state = state_of(request)
    s = state.settings
    form = await request.post()
    name = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    target = local_next(str(form.get("next", "")))
    client = client_of(request)
    t = translator(language_of(request))
    by_name, by_client = state.store.login_failures(name, client, minutes=s.login_window_minutes)
    if by_name >= s.login_max_failures or by_client >= 4 * s.login_max_failures:
        state.store.audit(None, "login_throttled", name, client)
        message = t("login.throttled", minutes=round(s.login_window_minutes))
        return await login_form(request, message=message, status=429, values={"username": name})
    user = state.store.user(name) if name else None
    if user is None or user["disabled_at"] or user["role"] not in STAFF:
        await _in_thread(burn_time, password, state.hasher)
        ok = False
    else:
        ok = await _in_thread(verify_password, user["password_hash"], password, state.hasher)
    if not ok:
        state.store.audit(user["name"] if user else None, "login_failed", name, client)
        return await login_form(request, message=t("login.failed"), status=401, values={"username": name})
    token = state.store.create_session(user["name"], hours=s.session_hours)
    state.store.audit(user["name"], "login", user["name"], client)
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path=PREFIX + "/")
    raise response


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Argon2 takes ~0.1 s of CPU and releases the GIL: off the event loop, which also serves the feed."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def logout(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.store.end_session(request.cookies.get(SESSION_COOKIE, ""))
    state.store.audit(request[USER]["name"], "logout", None, client_of(request))
    response = web.HTTPSeeOther(PREFIX + "/login")
    response.del_cookie(SESSION_COOKIE, path=PREFIX + "/")
    raise response


async def switch_language(request: web.Request) -> web.StreamResponse:
    """``/console/lang?to=en&next=…``: remember the language in a cookie and go back."""
    wanted = request.query.get("to", "")
    response = web.HTTPSeeOther(local_next(request.query.get("next")))
    if wanted in LANGUAGES:
        set_cookie(request, response, LANG_COOKIE, wanted, max_age=365 * 86400)
    raise response
