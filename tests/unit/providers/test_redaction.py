"""No credential reaches an error message, whatever the server echoes and wherever.

The server here is an in-memory Transport (the Endpoint's transport
strategy) that answers a fixed body: real servers cannot be made to echo a
key at every byte offset on command, and 5 shapes x 80 offsets x 2
statuses over HTTP would cost seconds for nothing the transport adds.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Mapping

import pytest

from faust_inference import ModelSettings
from faust_inference.exceptions import ClientError, ResponseDecodeError
from faust_inference.providers import (
    Endpoint,
    Response,
    TokenAuth,
    TokenCache,
    excerpt,
    model_route_error,
    redact_url,
    scrub,
    url_secrets,
)
from faust_inference.providers.redaction import (
    MASK,
    header_secrets,
    is_secret_header,
    redact_headers,
)

_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "xyXY")


class EchoTransport:
    """Answers every request with one status and body (a test double)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        self.sent: list[Mapping[str, str]] = []

    async def request(self, method, url, body, headers, *, max_bytes=0):
        self.sent.append(headers)
        return Response(self.status, {}, self.body)


def _random(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(_ALPHABET) for _ in range(n))


def _fragments(secret: str, size: int = 6) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def _shapes() -> list[tuple[str, dict, str, str]]:
    """(name, endpoint kwargs, what the server echoes, the secret that must not leak)."""
    sk = "sk-proj-" + _random(26, 1)
    token40 = _random(40, 2)
    bearer = _random(48, 3)
    user, password = "svc-user", "pw-" + _random(20, 4)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    query_key = _random(32, 5)
    gateway_key = _random(24, 9)
    proxy_token = _random(30, 10)
    return [
        ("sk", {"key": sk}, f"Incorrect API key provided: {sk}.", sk),
        (
            "token40",
            {"key": token40, "key_header": "api-key", "key_scheme": ""},
            f"key {token40} is not valid",
            token40,
        ),
        ("bearer", {"bearer": bearer}, f"Authorization: Bearer {bearer}", bearer),
        ("basic", {"userinfo": f"{user}:{password}"}, f"Authorization: Basic {basic}", basic),
        ("query", {"key": query_key}, f"GET /v1/models?key={query_key}&x=1", query_key),
        # Keys the user put in headers= (a gateway's): echoed without a label.
        (
            "header",
            {"headers": {"X-Api-Key": gateway_key}},
            f"gateway rejected {gateway_key}",
            gateway_key,
        ),
        (
            "header-scheme",
            {"headers": {"Proxy-Authorization": f"Bearer {proxy_token}"}},
            f"proxy token {proxy_token} expired",
            proxy_token,
        ),
    ]


def _endpoint(kwargs: dict, transport: EchoTransport) -> Endpoint:
    settings = ModelSettings(
        name="m",
        provider="http",
        endpoint="http://127.0.0.1:8080",
        headers=kwargs.get("headers", {}),
    )
    url = "http://127.0.0.1:8080/v1/chat/completions"
    if "userinfo" in kwargs:
        url = f"http://{kwargs['userinfo']}@127.0.0.1:8080/v1/chat/completions"
    auth = None
    if "bearer" in kwargs:
        token = kwargs["bearer"]
        auth = TokenAuth(TokenCache(lambda: (token, 4e9)))
    return Endpoint.for_model(
        settings,
        transport,
        url,
        key=kwargs.get("key"),
        key_header=kwargs.get("key_header", "Authorization"),
        key_scheme=kwargs.get("key_scheme", "Bearer"),
        auth=auth,
        classify=model_route_error,
    )


@pytest.mark.parametrize("shape", _shapes(), ids=lambda s: s[0])
async def test_a_key_echoed_at_any_offset_never_reaches_the_error(shape):
    name, kwargs, echoed, secret = shape
    for status in (401, 200):  # an error status, and a 2xx body that is not JSON
        # Every offset where the key lies across the 300-character excerpt
        # boundary (keys here are up to 60 long), and a few at the start.
        for offset in [*range(0, 4), *range(230, 305)]:
            body = ("x" * offset + " " + echoed + " " + "y" * 400).encode()
            transport = EchoTransport(status, body)
            endpoint = _endpoint(kwargs, transport)
            with pytest.raises((ClientError, ResponseDecodeError)) as info:
                await endpoint.post({"messages": []})
            text = str(info.value) + repr(info.value) + repr(endpoint)
            leaked = [f for f in _fragments(secret) if f in text]
            assert not leaked, (name, status, offset, leaked[:3])
            assert ("401" in text) == (status == 401)
    # The credential was really sent: the test is not vacuous.
    assert secret in " ".join(transport.sent[-1].values())


async def test_a_refreshed_token_and_the_one_before_it_are_both_scrubbed():
    tokens = iter([("tok-first-" + _random(30, 6), 0.0), ("tok-second-" + _random(30, 7), 4e9)])
    cache = TokenCache(lambda: next(tokens), refresh_margin=0)
    first = await cache.token()
    second = await cache.token()  # the first one expired at once
    assert first != second and set(cache.secrets()) == {first, second}
    text = scrub(f"old {first} new {second}", cache.secrets())
    assert first not in text and second not in text


def test_scrub_catches_credential_shapes_it_was_not_told_about():
    text = scrub(
        'key sk-abcdef123456 and "Authorization: Bearer eyJhbGciOi.J9.x-y" and '
        "Basic Ym9iOnB3 and https://h/p?api_key=k-998877&x=1 and token=zzzz9999",
        (),
    )
    for leaked in ("sk-abcdef", "eyJhbG", "Ym9iOnB3", "k-998877", "zzzz9999"):
        assert leaked not in text, leaked
    assert "Bearer ***" in text and "api_key=***" in text


def test_secrets_are_scrubbed_url_encoded_and_json_escaped_too():
    secret = "p@ss/word+1"
    text = scrub("a p%40ss%2Fword%2B1 b p@ss\\/word+1 c p@ss/word+1", [secret])
    assert "p%40ss" not in text and "word+1" not in text and text.count("***") == 3


def test_excerpt_scrubs_before_it_cuts():
    secret = _random(26, 8)
    for offset in range(280, 305):
        cut = excerpt(("x" * offset + secret).encode(), [secret], limit=300)
        assert not any(f in cut for f in _fragments(secret)), offset


def test_urls_lose_userinfo_query_and_fragment():
    assert (
        redact_url("https://u:p@h.example:8443/v1/x?key=abc#frag") == "https://h.example:8443/v1/x"
    )
    assert url_secrets("https://bob:pw-123@h/p?key=abcd1234") == (
        "pw-123",
        "bob:pw-123",
        base64.b64encode(b"bob:pw-123").decode(),
        "abcd1234",
    )


async def test_every_provider_tells_its_secrets():
    from faust_inference import ModelRegistry
    from faust_inference.providers import secrets_of

    registry = ModelRegistry()
    models = [
        registry.register("k", provider="kserve", endpoint="http://bob:pw-1234@127.0.0.1:9"),
        registry.register(
            "o",
            provider="openai",
            endpoint="http://127.0.0.1:9/v1",
            api_key="sk-abcd1234",
            task="text_generation",
        ),
        registry.register("h", provider="http", endpoint="http://127.0.0.1:9", api_key="k-12345"),
    ]
    found = [secrets_of(m.runner.provider) for m in models]
    assert "pw-1234" in found[0] and "sk-abcd1234" in found[1] and "k-12345" in found[2]
    for m in models:
        assert "pw-1234" not in repr(m.runner.provider.endpoint)
    await registry.aclose()


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("X-API-KEY", True),
        ("api-key", True),
        ("X-Gateway-Token", True),
        ("x-client-secret", True),
        ("Ocp-Apim-Subscription-Key", True),
        ("X-Auth-Email", True),
        ("x-team", False),
        ("Content-Type", False),
        ("azureml-model-deployment", False),
    ],
)
def test_auth_like_headers_are_secret_by_name(name, secret):
    assert is_secret_header(name) is secret
    assert (redact_headers({name: "v-1234"})[name] == MASK) is secret
    assert (header_secrets({name: "v-1234"}) == ("v-1234",)) is secret


def test_a_header_value_and_its_credential_after_the_scheme_are_both_secrets():
    assert header_secrets({"Authorization": "Bearer t-5678", "x-key": ""}) == (
        "Bearer t-5678",
        "t-5678",
    )


def test_a_url_without_a_scheme_loses_its_userinfo_too():
    assert redact_url("bob:pw-123@127.0.0.1:8080/v1?key=abc") == "127.0.0.1:8080/v1"
    assert redact_url("localhost:8080") == "localhost:8080"
    assert redact_url("ftp://bob:pw-123@h/p") == "ftp://h/p"


async def test_header_keys_are_among_the_secrets_every_model_tells():
    from faust_inference import ModelRegistry
    from faust_inference.providers import secrets_of

    registry = ModelRegistry()
    model = registry.register(
        "h",
        provider="http",
        endpoint="http://127.0.0.1:9",
        headers={"X-Api-Key": "gw-key-2468", "x-team": "fraud"},
    )
    found = secrets_of(model.runner.provider)
    assert "gw-key-2468" in found and "fraud" not in found
    # What the agent does to a dead letter's error text.
    assert scrub("401: gateway key gw-key-2468 revoked", found) == "401: gateway key *** revoked"
    await registry.aclose()
