"""Schemathesis against the live service: requests generated from the OpenAPI document the
service serves (valid and invalid bodies, every path and method it documents) go over real
HTTP to a real server with the warm sandbox. Every answer must match the document (status
codes, content types, body schemas), and no answer is a 5xx but the documented
`EMPTY_OUTPUT` (a script that died without reporting)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.server import Server, running_server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("nsjail-warm", tmp_path_factory.mktemp("schemathesis")) as srv:
        yield srv


def no_undocumented_server_error(_ctx: Any, response: Any, _case: Any) -> None:
    """A 5xx is a failure unless it is the contract's EMPTY_OUTPUT."""
    if response.status_code >= 500:
        body = response.json() if "json" in response.headers.get("content-type", [""])[0] else {}
        assert body.get("error") == "EMPTY_OUTPUT", (response.status_code, response.text[:500])


CHECKS = [
    no_undocumented_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# schemathesis' own pytest plugin does not work with this pytest (it reads a private node
# attribute), so its strategies drive a plain Hypothesis test per operation and mode.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_matches_the_document(live: Server, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("GET", "/health"),
        ("POST", "/execute"),
        ("GET", "/metrics"),
    }
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path != "/execute":
            continue  # nothing to get wrong in a request without parameters or body

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[operation.path],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(base_url=live.url, checks=CHECKS, timeout=30)

        check()


# /execute runs scripts: most of the budget goes there; the others answer from memory.
EXAMPLES = {"/execute": 60, "/health": 5, "/metrics": 5}
