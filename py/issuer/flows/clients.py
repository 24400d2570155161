"""Registered OAuth clients and their redirect URIs (RFC 6749 §3.1.2, RFC 8252).

``OAUTH_CLIENTS`` is JSON: ``{"client_id": ["redirect uri pattern", ...]}``.
A pattern is an exact URI, or a loopback URI without a port
(``http://127.0.0.1/callback``), which matches any port as RFC 8252 §7.3
asks for native apps. Nothing else is a wildcard: an unregistered client or
redirect URI is an error page, never a redirect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from issuer.errors import ConfigError

DEFAULT_OAUTH_CLIENTS = json.dumps(
    {
        "vscode-extension": [
            "vscode://softcodes.softcodes-vscode/auth-callback",
            "http://127.0.0.1/callback",
        ]
    }
)

_LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "localhost"}


@dataclass(frozen=True)
class OAuthClients:
    redirects: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, raw: str | None) -> OAuthClients:
        try:
            data = json.loads(raw or DEFAULT_OAUTH_CLIENTS)
        except ValueError as exc:
            raise ConfigError("OAUTH_CLIENTS: not valid JSON", variable="OAUTH_CLIENTS") from exc
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(u, str) for u in v)
            for k, v in data.items()
        ):
            raise ConfigError(
                'OAUTH_CLIENTS: expected {"client_id": ["redirect uri", ...]}',
                variable="OAUTH_CLIENTS",
            )
        return cls({k: tuple(v) for k, v in data.items()})

    def known(self, client_id: str) -> bool:
        return client_id in self.redirects

    def redirect_allowed(self, client_id: str, redirect_uri: str) -> bool:
        patterns = self.redirects.get(client_id)
        if not patterns or len(redirect_uri) > 2000:
            return False
        try:
            got = urlsplit(redirect_uri)
            got_port = got.port
        except ValueError:
            return False
        if got.fragment:
            return False  # RFC 6749 §3.1.2: no fragment
        for pattern in patterns:
            if redirect_uri == pattern:
                return True
            want = urlsplit(pattern)
            if (
                want.scheme == "http"
                and want.hostname in _LOOPBACK_HOSTS
                and want.port is None
                and got.scheme == "http"
                and got.hostname == want.hostname
                and got_port is not None
                and got.path == want.path
            ):
                return True
        return False
