"""The API tests' world: a ledger of really signed results and a server over it (module-scoped, one per test file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.api.api_world import ServerThread, World, commit, make_world, signed_plate, token


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A ledger of 3 plates × 40 really signed results (seq 1..120)."""
    w = make_world(tmp_path_factory.mktemp("api"))
    for plate in range(3):
        commit(w, signed_plate(w, plate, 40))
    return w


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerThread]:
    """The API over ``world`` on a loopback port."""
    s = ServerThread(world).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def results_token(world: World) -> str:
    """A token with scope read:results."""
    return token(world, "read:results")
