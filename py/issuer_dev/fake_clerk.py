"""A local fake of Clerk, for tests and the demo only.

Clerk's servers cannot be reached from tests, so this stands in for the two
parts of Clerk the issuer talks to, over real HTTP on 127.0.0.1 and in Clerk's
real wire format:

* the JWKS (``/.well-known/jwks.json`` as the Frontend API serves it, public;
  ``/v1/jwks`` as the Backend API serves it, bearer secret required), signing
  v1 and v2 session tokens with its own RSA key;
* ``GET /v1/users/{user_id}/organization_memberships`` answering
  ``{"data": [organization_membership...], "total_count": N}`` with
  ``limit`` (1-500, default 10) / ``offset`` paging and the bearer secret
  checked, errors as ``{"errors": [{"message", "long_message", "code"}]}``.

It is never active unless a caller points ``CLERK_JWKS_URL`` /
``CLERK_API_URL`` at it. It counts requests per path (so a test can prove "no
API call") and can be told to fail (``fail_with``) or stall (``delay``).

    with FakeClerk() as clerk:
        clerk.add_membership("user_1", "org_1", "Acme", role="org:admin")
        token = clerk.session_token("user_1", org_id="org_1")
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

_MEMBERSHIPS_PATH = re.compile(r"^/v1/users/(?P<user_id>[^/]+)/organization_memberships$")
_ADMIN_PERMISSIONS = [
    "org:sys_profile:manage",
    "org:sys_profile:delete",
    "org:sys_memberships:read",
    "org:sys_memberships:manage",
    "org:sys_domains:read",
    "org:sys_domains:manage",
]
_MEMBER_PERMISSIONS = ["org:sys_memberships:read"]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is expected; stay quiet."""


class FakeClerk:
    """Fake Clerk JWKS + Backend API on a free loopback port, in a background thread."""

    def __init__(self, *, secret_key: str | None = None, host: str = "127.0.0.1") -> None:
        self.secret_key = secret_key or f"sk_test_fake_{secrets.token_urlsafe(24)}"
        self._host = host
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate_key(keep_old=False)
        self._users: dict[str, dict[str, Any]] = {}
        self._orgs: dict[str, dict[str, Any]] = {}
        self._memberships: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._fail_status: int | None = None
        self._fail_jwks = False
        self._delay = 0.0
        self._delay_jwks = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeClerk:
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._server = _Server((self._host, 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-clerk",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeClerk:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Also the ``iss`` of its session tokens (Clerk: the Frontend API URL)."""
        if self._server is None:
            raise RuntimeError("FakeClerk is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    @property
    def backend_jwks_url(self) -> str:
        return f"{self.api_url}/jwks"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def env(self) -> dict[str, str]:
        """The issuer's Clerk variables pointing at this fake."""
        return {
            "CLERK_SECRET_KEY": self.secret_key,
            "CLERK_API_URL": self.api_url,
            "CLERK_JWKS_URL": self.jwks_url,
        }

    # -- directory ----------------------------------------------------------------

    def add_user(self, user_id: str, *, email: str | None = None) -> None:
        with self._lock:
            self._users.setdefault(user_id, {"email": email})
            if email is not None:
                self._users[user_id]["email"] = email
            self._memberships.setdefault(user_id, [])

    def add_organization(self, org_id: str, name: str, *, slug: str | None = None) -> None:
        with self._lock:
            self._add_org(org_id, name, slug)

    def _add_org(self, org_id: str, name: str | None, slug: str | None) -> dict[str, Any]:
        org = self._orgs.get(org_id)
        if org is None:
            now = _now_ms()
            org = {
                "object": "organization",
                "id": org_id,
                "name": name or org_id,
                "slug": slug or (name or org_id).lower().replace(" ", "-"),
                "image_url": "",
                "has_image": False,
                "members_count": 0,
                "max_allowed_memberships": 0,
                "admin_delete_enabled": True,
                "public_metadata": {},
                "private_metadata": {},
                "created_by": "",
                "created_at": now,
                "updated_at": now,
            }
            self._orgs[org_id] = org
        elif name is not None:
            org["name"] = name
        return org

    def add_membership(
        self, user_id: str, org_id: str, org_name: str | None = None, role: str = "org:member"
    ) -> dict[str, Any]:
        """Make ``user_id`` a member of ``org_id`` (both created when new).

        ``role`` is stored as given, so legacy keys (``admin``,
        ``basic_member``) can be served too. Returns the membership object.
        """
        self.add_user(user_id)
        with self._lock:
            org = self._add_org(org_id, org_name, None)
            self._memberships[user_id] = [
                m for m in self._memberships[user_id] if m["organization"]["id"] != org_id
            ]
            now = _now_ms()
            key = role.removeprefix("org:")
            membership = {
                "object": "organization_membership",
                "id": f"orgmem_{secrets.token_hex(12)}",
                "role": role,
                "role_name": key.replace("_", " ").title(),
                "permissions": _ADMIN_PERMISSIONS if key == "admin" else _MEMBER_PERMISSIONS,
                "public_metadata": {},
                "private_metadata": {},
                "created_at": now,
                "updated_at": now,
                "organization": org,
                "public_user_data": {
                    "user_id": user_id,
                    "first_name": None,
                    "last_name": None,
                    "image_url": "",
                    "has_image": False,
                    "identifier": self._users[user_id]["email"] or user_id,
                },
            }
            self._memberships[user_id].append(membership)
            org["members_count"] = sum(
                1
                for items in self._memberships.values()
                for m in items
                if m["organization"]["id"] == org_id
            )
            return membership

    def remove_membership(self, user_id: str, org_id: str) -> None:
        with self._lock:
            self._memberships[user_id] = [
                m for m in self._memberships.get(user_id, []) if m["organization"]["id"] != org_id
            ]

    def role_of(self, user_id: str, org_id: str) -> str | None:
        with self._lock:
            for m in self._memberships.get(user_id, []):
                if m["organization"]["id"] == org_id:
                    return str(m["role"])
        return None

    # -- tokens --------------------------------------------------------------------

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """A new signing key (new ``kid``); the old one stays in the JWKS if ``keep_old``."""
        kid = f"ins_fake_{secrets.token_hex(8)}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if not keep_old:
            self._keys.clear()
        self._keys[kid] = key
        self.kid = kid
        return kid

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = []
        for kid, key in list(self._keys.items()):
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def session_token(
        self,
        user_id: str,
        *,
        version: int = 2,
        org_id: str | None = None,
        org_role: str | None = None,
        azp: str | None = "http://localhost:3000",
        sts: str | None = None,
        exp_in: int = 60,
        iat_offset: int = 0,
        session_id: str | None = None,
        email: str | None = None,
        kid: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A Clerk session token for ``user_id``, signed with the current key.

        With ``org_id``, the org is the session's active org (v2: ``o.id`` /
        ``o.rol`` without prefix; v1: ``org_id`` / ``org_role`` with prefix);
        the role defaults to the user's membership role. ``kid`` overrides the
        header (e.g. a ``kid`` the JWKS does not have).
        """
        now = int(time.time()) + iat_offset
        claims: dict[str, Any] = {
            "exp": now + exp_in,
            "fva": [0, -1],
            "iat": now,
            "iss": self.base_url,
            "jti": secrets.token_hex(10),
            "nbf": now - 5,
            "sid": session_id or f"sess_{secrets.token_hex(12)}",
            "sub": user_id,
        }
        if azp is not None:
            claims["azp"] = azp
        if sts is not None:
            claims["sts"] = sts
        if email is not None:
            claims["email"] = email
        if org_id is not None:
            role = org_role or self.role_of(user_id, org_id) or "org:member"
            slug = self._orgs[org_id]["slug"] if org_id in self._orgs else org_id
            if version == 2:
                claims["o"] = {"id": org_id, "rol": role.removeprefix("org:"), "slg": slug}
            else:
                claims.update(
                    {"org_id": org_id, "org_role": role, "org_slug": slug, "org_permissions": []}
                )
        if version == 2:
            claims["v"] = 2
        claims.update(extra or {})
        signing_key = self._keys[self.kid]
        headers = {"kid": kid or self.kid, "typ": "JWT"}
        return jwt.encode(claims, signing_key, algorithm="RS256", headers=headers)

    # -- observation and failure modes -----------------------------------------------

    def calls(self, path: str | None = None) -> int:
        """Requests received for ``path`` (exact, no query), or in total."""
        with self._lock:
            return sum(self._calls.values()) if path is None else self._calls[path]

    @property
    def api_calls(self) -> int:
        """Backend API user requests (the memberships endpoint), any user."""
        with self._lock:
            return sum(n for p, n in self._calls.items() if p.startswith("/v1/users/"))

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def fail_with(self, status: int | None, *, jwks: bool = False) -> None:
        """Answer Backend API requests with ``status`` (``None`` = healthy again).
        With ``jwks=True`` the JWKS endpoints fail too."""
        with self._lock:
            self._fail_status = status
            self._fail_jwks = jwks

    def delay(self, seconds: float, *, jwks: bool = False) -> None:
        """Stall Backend API answers by ``seconds`` (``0`` = prompt again)."""
        with self._lock:
            self._delay = seconds
            self._delay_jwks = jwks

    # -- request handling (called from the server threads) ----------------------------

    def _handle(self, method: str, raw_path: str, authorization: str | None) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        path = url.path
        is_jwks = path in ("/.well-known/jwks.json", "/v1/jwks")
        with self._lock:
            self._calls[path] += 1
            delay = self._delay if (self._delay_jwks or not is_jwks) else 0.0
            fail = self._fail_status if (self._fail_jwks or not is_jwks) else None
        if delay:
            time.sleep(delay)
        if fail is not None:
            return fail, _error("internal_clerk_error", "Something went wrong")
        if method != "GET":
            return 405, _error("method_not_allowed", "Method not allowed")
        if path == "/.well-known/jwks.json":
            return 200, self.jwks()
        if not path.startswith("/v1/"):
            return 404, _error("resource_not_found", "Not found")
        if authorization != f"Bearer {self.secret_key}":
            return 401, _error("authentication_invalid", "Invalid authentication")
        if path == "/v1/jwks":
            return 200, self.jwks()
        match = _MEMBERSHIPS_PATH.match(path)
        if match is None:
            return 404, _error("resource_not_found", "Not found")
        return self._memberships_page(match["user_id"], parse_qs(url.query))

    def _memberships_page(self, user_id: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            limit = int(query.get("limit", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            return 422, _error("form_param_format_invalid", "limit and offset must be integers")
        if not 1 <= limit <= 500 or offset < 0:
            return 422, _error("form_param_value_invalid", "limit or offset out of range")
        with self._lock:
            if user_id not in self._users:
                return 404, _error("resource_not_found", "User not found")
            items = list(self._memberships[user_id])
        return 200, {"data": items[offset : offset + limit], "total_count": len(items)}


def _error(code: str, message: str) -> dict[str, Any]:
    """Clerk's Backend API error body."""
    return {
        "errors": [{"message": message, "long_message": message, "code": code}],
        "clerk_trace_id": secrets.token_hex(16),
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeClerk
    server_version = "FakeClerk/1.0"

    def do_GET(self) -> None:
        self._respond("GET")

    def do_POST(self) -> None:
        self._respond("POST")

    def _respond(self, method: str) -> None:
        status, body = self.fake._handle(method, self.path, self.headers.get("Authorization"))
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up waiting (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging on stderr."""
