import pytest

from faust_inference import ClientError, RateLimited, ServerError
from faust_inference.providers import (
    TransportPool,
    parse_retry_after,
    redact_url,
    status_error,
)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (429, RateLimited, True),
        (500, ServerError, True),
        (503, ServerError, True),
        (408, ServerError, True),
        (400, ClientError, False),
        (401, ClientError, False),
        (404, ClientError, False),
        (422, ClientError, False),
    ],
)
def test_statuses_map_to_one_error_each(status, cls, retryable):
    error = status_error(status, {"Retry-After": "2"}, b'{"error": "x"}', "http://h:1/p")
    assert type(error) is cls and error.retryable is retryable and error.status == status
    assert error.retry_after == 2.0


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_urls_and_bodies_in_errors_lose_credentials():
    assert redact_url("https://user:pw@api.example.com:8443/v1/x?key=abc") == (
        "https://api.example.com:8443/v1/x"
    )
    error = status_error(
        401,
        {},
        b'{"error": "Incorrect API key provided: sk-proj-abcdefgh1234"}',
        "https://api.example.com/v1/chat/completions?key=k-123",
        secrets=("k-123",),
    )
    assert "sk-proj-abcdefgh1234" not in str(error) and "k-123" not in str(error)


def test_one_transport_per_origin():
    pool = TransportPool()
    a = pool.get("http://127.0.0.1:8080/v2/models/a/infer")
    b = pool.get("http://127.0.0.1:8080/v2/models/b/infer")
    c = pool.get("http://127.0.0.1:8081/v1/embeddings")
    assert a is b and a is not c
