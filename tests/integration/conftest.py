from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.server import Server, running_server

# The rlimit runners drop each script to its own uid, which needs root; unprivileged, only
# nsjail (through user namespaces) can sandbox, and the rlimit cases are skipped, not failed.
# The warm runners are what `auto` picks, so `make test` runs every suite against them; the
# one-shot runners (the fallbacks) get the same suites in `make test-slow`.
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the rlimit runners need root")
MODES = (
    "nsjail-warm",
    pytest.param("rlimit-warm", marks=NEEDS_ROOT),
    pytest.param("nsjail", marks=pytest.mark.slow),
    pytest.param("rlimit", marks=(NEEDS_ROOT, pytest.mark.slow)),
)


@pytest.fixture(scope="session", params=MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One real server per sandbox mode, shared by the tests of the session."""
    with running_server(request.param, tmp_path_factory.mktemp("servers")) as srv:
        health = srv.health().json()
        assert health["sandbox"] == request.param, srv.log()
        yield srv
