"""Keeping credentials out of every message, repr and log line.

One module, used by every provider, the CLI and the core, so that there is
one definition of "safe to show". Two rules:

- **Scrub before cutting.** Text is shortened (error excerpts, reprs) only
  after secrets are removed: a key cut in half by an excerpt boundary is no
  longer recognisable, and its first 25 characters would leak.
- **Scrub what the model knows, and what looks like a credential.** Known
  secrets (API keys, current and previous bearer tokens, the password and
  the ``Basic`` base64 of an endpoint's userinfo, its query values, the
  values of auth-like headers: see :func:`is_secret_header`) are replaced
  wherever they appear, also URL-encoded or JSON-escaped; patterns catch
  credentials the model never saw (``sk-...``, ``Bearer ...``,
  ``Basic ...``, ``key=...``) in bodies servers echo back.

Example:
    >>> scrub('{"error": "bad key sk-proj-abc123 for user"}', ())
    '{"error": "bad key *** for user"}'
    >>> redact_url("https://user:pw@api.example.com/v1?key=abc")
    'https://api.example.com/v1'
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

__all__ = [
    "MASK",
    "excerpt",
    "header_secrets",
    "is_secret_header",
    "redact_headers",
    "redact_url",
    "scrub",
    "secrets_of",
    "url_secrets",
]

MASK = "***"
"""What a removed secret is replaced with."""

# Credentials by shape, for the ones the model was never told about (a
# server echoing another key, a gateway's token). Each pattern removes the
# credential and keeps its label, so a message still says what was there.
_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"),
    re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{4,}"),
    re.compile(
        r"(?i)\b((?:api[_-]?)?key|token|access_token|secret|password|passwd|sig|signature)"
        r"(\"?\s*[=:]\s*\"?)([^&\s\"',;}]{3,})"
    ),
)
# Headers whose values are credentials: these names, and any name containing
# one of the parts. Users put gateway keys in headers= (x-api-key, a second
# Authorization), so the rule goes by name, not by what the docs intended.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
_SECRET_HEADER_PARTS = ("token", "secret", "key", "auth")
# Secrets shorter than this are not replaced on their own: a two-letter
# password would turn every word containing it into "***". Patterns still apply.
MIN_SECRET = 4


def _pattern_sub(match: re.Match[str]) -> str:
    # Keep the label ("Bearer ", "key=") and mask the value.
    groups = match.groups()
    return f"{groups[0]}{groups[1]}{MASK}" if groups else MASK


def _forms(secret: str) -> set[str]:
    """The ways a secret appears in echoed text: as is, URL-encoded, JSON-escaped."""
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        escaped,
        escaped.replace("/", "\\/"),
    }
    return {f for f in forms if len(f) >= MIN_SECRET}


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every credential-shaped string masked.

    Args:
        text: anything about to be shown: an error body, a message, a repr.
        secrets: strings to remove wherever they occur (a provider's
            :meth:`secrets`); empty and very short ones are skipped.

    Example:
        >>> scrub("echo: 0123456789abcdef0123", ["0123456789abcdef0123"])
        'echo: ***'
    """
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET:
            forms |= _forms(secret)
    # Longest first, so a secret that contains another is removed whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_pattern_sub, text)
    return text


def excerpt(data: bytes | str, secrets: Iterable[str] = (), limit: int = 300) -> str:
    """The start of ``data``, scrubbed and then cut to ``limit`` characters.

    Only a window a little longer than ``limit`` is scrubbed (a body may be
    megabytes): the window reaches past the cut by the longest secret and a
    margin, so a secret that starts before the cut is inside it whole.

    Example:
        >>> excerpt(b"x" * 294 + b" sk-0123456789abcdef", limit=300)[-8:]
        'xxxx ***'
    """
    secrets = tuple(secrets)
    longest = max((len(s) for s in secrets), default=0)
    window = limit + 3 * longest + 512
    raw = data[:window]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = scrub(text, secrets)
    if len(text) > limit or len(data) > window:
        text = text[:limit] + "..."
    return text


def redact_url(url: str) -> str:
    """``url`` without its user info, query string or fragment, where keys tend to hide.

    A URL without ``//`` (a scheme forgotten: ``bob:pw@host:8080``) is read
    as a host and path, so its user info goes too.

    Example:
        >>> redact_url("http://u:p@127.0.0.1:8080/v2/models/m?key=k#x")
        'http://127.0.0.1:8080/v2/models/m'
        >>> redact_url("bob:pw@127.0.0.1:8080/v1")
        '127.0.0.1:8080/v1'
    """
    parts = urlsplit(url)
    scheme = f"{parts.scheme}://"
    if not parts.netloc:
        # Without "//" urlsplit takes "bob:pw@host" for scheme "bob" and a path
        # holding the password: drop the query and everything up to the last "@".
        bare = re.split(r"[?#]", url, maxsplit=1)[0].rpartition("@")[2]
        parts, scheme = urlsplit(f"//{bare}"), ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{scheme}{host}{port}{parts.path}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials a URL carries: userinfo (and its ``Basic`` base64) and query values.

    Example:
        >>> url_secrets("https://bob:s3cret-pw@h/p?key=abcd1234")
        ('s3cret-pw', 'bob:s3cret-pw', 'Ym9iOnMzY3JldC1wdw==', 'abcd1234')
    """
    parts = urlsplit(url)
    found: list[str] = []
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        pair = f"{user}:{password}"
        found += [password, pair, base64.b64encode(pair.encode()).decode()]
    elif parts.username:
        found.append(unquote(parts.username))
    found += [value for _, value in parse_qsl(parts.query) if value]
    return tuple(dict.fromkeys(found))


def is_secret_header(name: str) -> bool:
    """Whether a request header's value is a credential, by the header's name.

    ``Authorization``, ``Proxy-Authorization``, ``X-Api-Key``, ``Api-Key`` and
    any name containing ``token``, ``secret``, ``key`` or ``auth`` (case
    does not matter). Their values are masked in reprs and scrubbed from
    every message and dead letter.

    Example:
        >>> is_secret_header("X-Gateway-Token"), is_secret_header("x-team")
        (True, False)
    """
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or any(part in lowered for part in _SECRET_HEADER_PARTS)


def header_secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The credential strings in ``headers``: auth-like headers' values, and what follows a scheme.

    ``Authorization: Bearer abc...`` gives both ``Bearer abc...`` and
    ``abc...``, so a server echoing the bare token is scrubbed too.

    Example:
        >>> header_secrets({"x-api-key": "gw-key-123", "Authorization": "Bearer tok-456",
        ...                 "x-team": "fraud"})
        ('gw-key-123', 'Bearer tok-456', 'tok-456')
    """
    found: list[str] = []
    for name, value in headers.items():
        if not value or not is_secret_header(name):
            continue
        found.append(value)
        scheme, _, credential = value.strip().partition(" ")
        if scheme.isalpha() and credential.strip():
            found.append(credential.strip())
    return tuple(dict.fromkeys(found))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the values of auth-like headers (:func:`is_secret_header`) masked.

    Example:
        >>> redact_headers({"x-api-key": "gw-key-123", "x-team": "fraud"})
        {'x-api-key': '***', 'x-team': 'fraud'}
    """
    return {name: MASK if is_secret_header(name) else value for name, value in headers.items()}


def secrets_of(provider: object) -> tuple[str, ...]:
    """The credential strings a provider uses now (its ``secrets()``), or none.

    Built-in providers answer from their :class:`~faust_inference.providers.Endpoint`;
    a plugin provider without a ``secrets`` method has none to give.

    Example:
        >>> class P:
        ...     def secrets(self):
        ...         return ("sk-abcdef",)
        >>> scrub("key sk-abcdef leaked", secrets_of(P()))
        'key *** leaked'
    """
    method = getattr(provider, "secrets", None)
    if not callable(method):
        return ()
    return tuple(s for s in method() if isinstance(s, str) and s)
