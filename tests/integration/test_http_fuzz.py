"""Malformed requests over real HTTP: every one ends in a documented code, never a 5xx, and
the server stays healthy. Bounded: a fixed number of examples against one server."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.server import Server

DOCUMENTED = {400: {"INVALID_REQUEST"}, 413: {"PAYLOAD_TOO_LARGE"}}

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
not_a_script = st.one_of(
    json_scalars.filter(lambda v: not isinstance(v, str)),
    st.just(""),
    st.text(max_size=20).map(lambda t: t + "\x00"),
    st.lists(json_scalars, max_size=3),
)
bad_bodies = st.one_of(
    st.binary(max_size=300),  # mostly not JSON at all
    st.lists(json_scalars, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "script"), json_scalars, max_size=3
    ).map(lambda d: json.dumps(d).encode()),
    not_a_script.map(lambda v: json.dumps({"script": v}).encode()),
    st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=8))
    .filter(lambda t: t[1] != "script")
    .map(lambda t: json.dumps({"script": t[0], t[1]: 1}).encode()),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bad_bodies)
def test_malformed_requests_get_a_documented_client_error(server: Server, body: bytes) -> None:
    answer = server.request("POST", "/execute", body, {"Content-Type": "application/json"})

    if answer.status in DOCUMENTED:
        assert answer.json()["error"] in DOCUMENTED[answer.status], answer.body
        assert answer.json()["message"]
    else:  # only a request the contract calls valid may reach the sandbox
        assert is_valid_request(body), f"HTTP {answer.status}: {answer.body!r}"
    assert server.health().status == 200


def is_valid_request(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(payload, dict)
        and set(payload) == {"script"}
        and isinstance(payload["script"], str)
        and payload["script"] != ""
        and "\x00" not in payload["script"]
    )
