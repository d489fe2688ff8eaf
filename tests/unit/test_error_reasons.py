"""The one table of error reasons (parakeet.errors.REASONS) and what is derived from it."""

from __future__ import annotations

import re

import grpc
import pytest

from parakeet.errors import REASONS, default_reason
from parakeet_server.core import errors
from parakeet_server.core.errors import InvalidRequest, LimitExceeded, ServiceError, error_for_reason
from tests.support.servers import REPO_ROOT

ERROR_TYPES = [
    errors.InvalidRequest,
    errors.LimitExceeded,
    errors.PreconditionFailed,
    errors.ServiceUnavailable,
    errors.DeadlineExceeded,
    errors.Unauthenticated,
    errors.Unimplemented,
]


@pytest.mark.parametrize("error_type", [ServiceError, *ERROR_TYPES], ids=lambda t: t.__name__)
def test_each_error_class_has_a_default_reason_named_after_its_code(error_type: type[ServiceError]) -> None:
    error = error_type("message")
    assert error.reason == error_type.default_reason == error_type.code.name
    assert REASONS[error.reason].code == error.code
    assert default_reason(error.code) == error.reason


def test_a_raise_site_names_a_reason_of_its_classs_code() -> None:
    assert LimitExceeded("m", reason="CONCURRENCY_LIMIT").reason == "CONCURRENCY_LIMIT"
    with pytest.raises(
        ValueError, match="reason CONCURRENCY_LIMIT is RESOURCE_EXHAUSTED, not INVALID_ARGUMENT"
    ):
        InvalidRequest("m", reason="CONCURRENCY_LIMIT")
    with pytest.raises(KeyError):
        InvalidRequest("m", reason="NO_SUCH_REASON")


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_builds_the_error_class_of_its_code(reason: str) -> None:
    classes = {t.code: t for t in [ServiceError, *ERROR_TYPES]}
    if REASONS[reason].code not in classes:  # only the gateway answers these (an unknown model id)
        assert reason in ("NOT_FOUND", "PERMISSION_DENIED")
        with pytest.raises(KeyError):
            error_for_reason(reason, "m")
        return
    error = error_for_reason(reason, "m")
    assert (type(error), error.reason, error.code) == (classes[error.code], reason, REASONS[reason].code)


def test_every_reason_the_services_raise_is_in_the_table() -> None:
    named = {
        match
        for path in (REPO_ROOT / "parakeet_server").rglob("*.py")
        for match in re.findall(r'reason="([A-Z0-9_]+)"', path.read_text())
    }
    assert named - set(REASONS) == set()
    # The reasons the issue asked for, each raised somewhere.
    assert {
        "CONCURRENCY_LIMIT",
        "PAYLOAD_TOO_LARGE",
        "DURATION_LIMIT",
        "MODEL_NOT_LOADED",
        "BACKEND_UNAVAILABLE",
        "BACKEND_CREDENTIALS",
        "AUDIO_UNDECODABLE",
        "AUDIO_MISSING",
        "URL_FORBIDDEN",
        "URL_FETCH_FAILED",
        "INVALID_FIELD",
        "UNKNOWN_FIELD",
        "INVALID_BASE64",
        "WARMING_UP",
        "MALFORMED_REQUEST",
    } <= named


def test_only_unavailable_reasons_and_the_concurrency_limit_are_retryable() -> None:
    retryable = {reason for reason, info in REASONS.items() if info.retryable}
    assert retryable == {"UNAVAILABLE", "WARMING_UP", "BACKEND_UNAVAILABLE", "CONCURRENCY_LIMIT"}
    assert {REASONS[r].code for r in retryable} == {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }


def test_docs_list_every_reason() -> None:
    document = (REPO_ROOT / "docs" / "reliability.md").read_text()
    assert [reason for reason in REASONS if f"`{reason}`" not in document] == []


def test_the_docs_reasons_table_is_the_code_table() -> None:
    document = (REPO_ROOT / "docs" / "reliability.md").read_text()
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| `([A-Z_]+)` \| (\d+) \| (yes|no) \|", document, re.MULTILINE)
    assert {reason: (code, int(http), retry == "yes") for reason, code, http, retry in rows} == {
        reason: (info.code.name, info.http_status, info.retryable) for reason, info in REASONS.items()
    }
