from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server import Server, running_server

MODES = ("nsjail", "rlimit")


@pytest.fixture(scope="session", params=MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One real server per sandbox mode, shared by the tests of the session."""
    with running_server(request.param, tmp_path_factory.mktemp("servers")) as srv:
        health = srv.health().json()
        assert health["sandbox"] == request.param, srv.log()
        yield srv
