"""Mounting the console on the API's aiohttp application (the one call engine.api makes)."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from argon2 import PasswordHasher

import engine.console.pages as pages
import engine.console.release as release
import engine.console.review as review
from engine.api.state import add_public_routes
from engine.console.app import (
    CONSOLE,
    HERE,
    PREFIX,
    ConsoleState,
    frame,
    gate,
    login,
    login_form,
    logout,
    switch_language,
)
from engine.console.passwords import DEFAULT_HASHER
from engine.console.settings import ConsoleSettings, console_settings
from engine.console.store import Clock, system_clock
from engine.datadir import DataDir

#: On the API's app: the state of the console mounted on it.
MOUNTED = web.AppKey("ketqua_console_mounted", ConsoleState)


def create_console(
    data: DataDir,
    ledger_path: Path,
    *,
    settings: ConsoleSettings | None = None,
    clock: Clock = system_clock,
    hasher: PasswordHasher = DEFAULT_HASHER,
) -> web.Application:
    """The console sub-application (mount it at ``/console/``)."""
    app = web.Application(middlewares=[frame, gate])
    state = ConsoleState(data, ledger_path, settings=settings, clock=clock, hasher=hasher)
    app[CONSOLE] = state
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda name: f"{PREFIX}/static/{name}"
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/lang", switch_language)
    app.router.add_static("/static/", HERE / "static", name="static", append_version=False)
    pages.add_routes(app)
    review.add_routes(app)
    release.add_routes(app)

    async def _close(_: web.Application) -> None:
        state.close()

    app.on_cleanup.append(_close)
    return app


def add_console(app: web.Application, data: DataDir, ledger_path: Path) -> list[str]:
    """Mount the console on the API's ``app`` unless ``[console] enabled = false``.

    Returns the console's route templates: the API's bearer-token guard lets
    them through (the console authenticates its own users by session).
    """
    settings = console_settings(data)
    if not settings.enabled:
        return []
    console = create_console(data, ledger_path, settings=settings)
    app.add_subapp(PREFIX + "/", console)
    app[MOUNTED] = console[CONSOLE]
    templates = [resource.canonical for resource in console.router.resources()]
    add_public_routes(app, templates)
    return templates


def console_state(app: web.Application) -> ConsoleState:
    """The console's state inside an API app (tests pin its clock through this); KeyError when none is mounted."""
    return app[MOUNTED]  # type: ignore[no-any-return]
