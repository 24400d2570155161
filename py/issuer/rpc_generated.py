"""Typed token-store RPCs, written by hand until the generated client lands.

STOPGAP (issue 19, branch i19tok): the typed client generated from the
catalog (``make gen``, branch i19gen) replaces this whole file; its names are
the ones used here (a frozen dataclass per result type, a keyword-only method
per RPC named as in SQL), so the call sites do not change when it does.
Only the token-store RPCs are here; the credit RPCs keep their wrappers in
:mod:`issuer.rpc`.

Results arrive as JSON from either backend (psycopg reads ``to_jsonb(r)``,
PostgREST answers JSON): a ``uuid`` as a string, a ``timestamptz`` as an ISO
8601 string. An answer without the promised shape is a broken contract
(:class:`RpcContractError`, HTTP 500), never a value guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

__all__ = [
    "DeviceDecisionResult",
    "ExtensionTokenResult",
    "ListExtensionTokensRow",
    "OrgScopeResult",
    "RpcContractError",
    "RpcMethods",
    "TokenGrantResult",
    "TokenPurgeResult",
]


class RpcContractError(RuntimeError):
    """An RPC answered something its catalog type does not allow: a bug, HTTP 500."""


def _row(data: Any, type_name: str, columns: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RpcContractError(f"{type_name}: expected a row (JSON object), got {data!r:.80}")
    for name in columns:
        if name not in data:
            raise RpcContractError(f"{type_name}: the answer has no column {name!r}")
    return data


def _rows(data: Any, fn: str) -> list[Any]:
    if not isinstance(data, list):
        raise RpcContractError(f"{fn}: expected a set of rows (JSON array), got {data!r:.80}")
    return data


def _str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise RpcContractError(f"expected text, got {type(v).__name__}")


def _bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    raise RpcContractError(f"expected boolean, got {type(v).__name__}")


def _int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise RpcContractError("expected an integer, got bool")
    try:
        as_int = int(v)
    except (TypeError, ValueError) as exc:
        raise RpcContractError(f"expected an integer, got {type(v).__name__}") from exc
    if as_int != v:
        raise RpcContractError(f"expected an integer, got {v!r}")
    return as_int


def _uuid(v: Any) -> UUID | None:
    if v is None or isinstance(v, UUID):
        return v
    if isinstance(v, str):
        try:
            return UUID(v)
        except ValueError as exc:
            raise RpcContractError(f"expected a uuid, got {v!r:.40}") from exc
    raise RpcContractError(f"expected a uuid, got {type(v).__name__}")


def _datetime(v: Any) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v)
        except ValueError as exc:
            raise RpcContractError(f"expected a timestamptz, got {v!r:.40}") from exc
    raise RpcContractError(f"expected a timestamptz, got {type(v).__name__}")


def _param(v: Any) -> Any:
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return v


@dataclass(frozen=True, slots=True)
class ExtensionTokenResult:
    """``public.extension_token_result``."""

    ok: bool | None
    reason: str | None
    id: UUID | None
    clerk_user_id: str | None
    clerk_org_id: str | None
    name: str | None
    expires_at: datetime | None
    jti: str | None
    chain_started_at: datetime | None
    replaced_id: UUID | None
    org_scope: str | None
    org_scope_reason: str | None
    seat_role: str | None
    seat_status: str | None

    @classmethod
    def from_json(cls, data: Any) -> ExtensionTokenResult:
        r = _row(
            data,
            "public.extension_token_result",
            (
                "ok",
                "reason",
                "id",
                "clerk_user_id",
                "clerk_org_id",
                "name",
                "expires_at",
                "jti",
                "chain_started_at",
                "replaced_id",
                "org_scope",
                "org_scope_reason",
                "seat_role",
                "seat_status",
            ),
        )
        return cls(
            ok=_bool(r["ok"]),
            reason=_str(r["reason"]),
            id=_uuid(r["id"]),
            clerk_user_id=_str(r["clerk_user_id"]),
            clerk_org_id=_str(r["clerk_org_id"]),
            name=_str(r["name"]),
            expires_at=_datetime(r["expires_at"]),
            jti=_str(r["jti"]),
            chain_started_at=_datetime(r["chain_started_at"]),
            replaced_id=_uuid(r["replaced_id"]),
            org_scope=_str(r["org_scope"]),
            org_scope_reason=_str(r["org_scope_reason"]),
            seat_role=_str(r["seat_role"]),
            seat_status=_str(r["seat_status"]),
        )


@dataclass(frozen=True, slots=True)
class OrgScopeResult:
    """``public.org_scope_result``."""

    org_scope: str | None
    org_scope_reason: str | None
    seat_role: str | None
    seat_status: str | None

    @classmethod
    def from_json(cls, data: Any) -> OrgScopeResult:
        r = _row(
            data,
            "public.org_scope_result",
            ("org_scope", "org_scope_reason", "seat_role", "seat_status"),
        )
        return cls(
            org_scope=_str(r["org_scope"]),
            org_scope_reason=_str(r["org_scope_reason"]),
            seat_role=_str(r["seat_role"]),
            seat_status=_str(r["seat_status"]),
        )


@dataclass(frozen=True, slots=True)
class TokenGrantResult:
    """``public.token_grant_result``."""

    ok: bool | None
    error: str | None
    reason: str | None
    clerk_user_id: str | None
    clerk_org_id: str | None
    email: str | None
    code_id: UUID | None
    family_id: UUID | None
    device_code_id: UUID | None
    family_revoked: bool | None
    interval_seconds: int | None

    @classmethod
    def from_json(cls, data: Any) -> TokenGrantResult:
        r = _row(
            data,
            "public.token_grant_result",
            (
                "ok",
                "error",
                "reason",
                "clerk_user_id",
                "clerk_org_id",
                "email",
                "code_id",
                "family_id",
                "device_code_id",
                "family_revoked",
                "interval_seconds",
            ),
        )
        return cls(
            ok=_bool(r["ok"]),
            error=_str(r["error"]),
            reason=_str(r["reason"]),
            clerk_user_id=_str(r["clerk_user_id"]),
            clerk_org_id=_str(r["clerk_org_id"]),
            email=_str(r["email"]),
            code_id=_uuid(r["code_id"]),
            family_id=_uuid(r["family_id"]),
            device_code_id=_uuid(r["device_code_id"]),
            family_revoked=_bool(r["family_revoked"]),
            interval_seconds=_int(r["interval_seconds"]),
        )


@dataclass(frozen=True, slots=True)
class DeviceDecisionResult:
    """``public.device_decision_result``."""

    ok: bool | None
    reason: str | None
    status: str | None
    client_id: str | None
    retry_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> DeviceDecisionResult:
        r = _row(
            data,
            "public.device_decision_result",
            ("ok", "reason", "status", "client_id", "retry_at"),
        )
        return cls(
            ok=_bool(r["ok"]),
            reason=_str(r["reason"]),
            status=_str(r["status"]),
            client_id=_str(r["client_id"]),
            retry_at=_datetime(r["retry_at"]),
        )


@dataclass(frozen=True, slots=True)
class TokenPurgeResult:
    """``public.token_purge_result``."""

    extension_tokens: int | None
    oauth_codes: int | None
    refresh_tokens: int | None

    @classmethod
    def from_json(cls, data: Any) -> TokenPurgeResult:
        r = _row(
            data,
            "public.token_purge_result",
            ("extension_tokens", "oauth_codes", "refresh_tokens"),
        )
        return cls(
            extension_tokens=_int(r["extension_tokens"]),
            oauth_codes=_int(r["oauth_codes"]),
            refresh_tokens=_int(r["refresh_tokens"]),
        )


@dataclass(frozen=True, slots=True)
class ListExtensionTokensRow:
    """A row of ``public.list_extension_tokens(p_clerk_user_id)``."""

    id: UUID | None
    name: str | None
    clerk_org_id: str | None
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> ListExtensionTokensRow:
        r = _row(
            data,
            "public.list_extension_tokens(p_clerk_user_id)",
            (
                "id",
                "name",
                "clerk_org_id",
                "created_at",
                "last_used_at",
                "expires_at",
                "revoked_at",
            ),
        )
        return cls(
            id=_uuid(r["id"]),
            name=_str(r["name"]),
            clerk_org_id=_str(r["clerk_org_id"]),
            created_at=_datetime(r["created_at"]),
            last_used_at=_datetime(r["last_used_at"]),
            expires_at=_datetime(r["expires_at"]),
            revoked_at=_datetime(r["revoked_at"]),
        )


class RpcMethods:
    """One method per token-store RPC; :class:`issuer.rpc.Rpc` runs them."""

    def invoke(
        self,
        fn: str,
        params: dict[str, Any],
        *,
        shape: Literal["row", "scalar"],
        setof: bool,
    ) -> Any:
        """Run ``public.<fn>`` with named arguments; the answer as JSON."""
        raise NotImplementedError

    def _run(
        self,
        fn: str,
        params: dict[str, Any],
        *,
        shape: Literal["row", "scalar"] = "row",
        setof: bool = False,
    ) -> Any:
        # An optional argument left None takes the database's default.
        clean = {k: _param(v) for k, v in params.items() if v is not None}
        return self.invoke(fn, clean, shape=shape, setof=setof)

    # -- extension tokens ------------------------------------------------------
    def check_org_scope(self, *, p_clerk_user_id: str, p_clerk_org_id: str) -> OrgScopeResult:
        """``public.check_org_scope(p_clerk_user_id, p_clerk_org_id)``."""
        return OrgScopeResult.from_json(
            self._run(
                "check_org_scope",
                {"p_clerk_user_id": p_clerk_user_id, "p_clerk_org_id": p_clerk_org_id},
            )
        )

    def create_extension_token(
        self,
        *,
        p_clerk_user_id: str,
        p_token_hash: str,
        p_name: str,
        p_expires_at: datetime,
        p_clerk_org_id: str | None = None,
        p_jti: str | None = None,
    ) -> UUID | None:
        """``public.create_extension_token(...)``: the new token's id."""
        return _uuid(
            self._run(
                "create_extension_token",
                {
                    "p_clerk_user_id": p_clerk_user_id,
                    "p_token_hash": p_token_hash,
                    "p_name": p_name,
                    "p_expires_at": p_expires_at,
                    "p_clerk_org_id": p_clerk_org_id,
                    "p_jti": p_jti,
                },
                shape="scalar",
            )
        )

    def validate_extension_token(self, *, p_token_hash: str) -> ExtensionTokenResult:
        """``public.validate_extension_token(p_token_hash)``."""
        return ExtensionTokenResult.from_json(
            self._run("validate_extension_token", {"p_token_hash": p_token_hash})
        )

    def revoke_extension_token(self, *, p_token_id: UUID, p_clerk_user_id: str) -> bool | None:
        """``public.revoke_extension_token(p_token_id, p_clerk_user_id)``."""
        return _bool(
            self._run(
                "revoke_extension_token",
                {"p_token_id": p_token_id, "p_clerk_user_id": p_clerk_user_id},
                shape="scalar",
            )
        )

    def list_extension_tokens(self, *, p_clerk_user_id: str) -> list[ListExtensionTokensRow]:
        """``public.list_extension_tokens(p_clerk_user_id)``: one row per token."""
        data = self._run("list_extension_tokens", {"p_clerk_user_id": p_clerk_user_id}, setof=True)
        return [ListExtensionTokensRow.from_json(r) for r in _rows(data, "list_extension_tokens")]

    def rotate_extension_token(
        self,
        *,
        p_old_token_hash: str,
        p_new_token_hash: str,
        p_new_expires_at: datetime,
        p_clerk_org_id: str | None = None,
        p_jti: str | None = None,
        p_max_lifetime_seconds: int | None = None,
    ) -> ExtensionTokenResult:
        """``public.rotate_extension_token(...)``."""
        return ExtensionTokenResult.from_json(
            self._run(
                "rotate_extension_token",
                {
                    "p_old_token_hash": p_old_token_hash,
                    "p_new_token_hash": p_new_token_hash,
                    "p_new_expires_at": p_new_expires_at,
                    "p_clerk_org_id": p_clerk_org_id,
                    "p_jti": p_jti,
                    "p_max_lifetime_seconds": p_max_lifetime_seconds,
                },
            )
        )

    # -- authorization codes and refresh tokens --------------------------------
    def create_oauth_code(
        self,
        *,
        p_code_hash: str,
        p_clerk_user_id: str,
        p_client_id: str,
        p_redirect_uri: str,
        p_code_challenge: str,
        p_code_challenge_method: str | None = None,
        p_clerk_org_id: str | None = None,
        p_ttl_seconds: int | None = None,
        p_email: str | None = None,
    ) -> datetime | None:
        """``public.create_oauth_code(...)``: the code's expiry."""
        return _datetime(
            self._run(
                "create_oauth_code",
                {
                    "p_code_hash": p_code_hash,
                    "p_clerk_user_id": p_clerk_user_id,
                    "p_client_id": p_client_id,
                    "p_redirect_uri": p_redirect_uri,
                    "p_code_challenge": p_code_challenge,
                    "p_code_challenge_method": p_code_challenge_method,
                    "p_clerk_org_id": p_clerk_org_id,
                    "p_ttl_seconds": p_ttl_seconds,
                    "p_email": p_email,
                },
                shape="scalar",
            )
        )

    def consume_oauth_code(
        self, *, p_code_hash: str, p_client_id: str, p_redirect_uri: str, p_code_verifier: str
    ) -> TokenGrantResult:
        """``public.consume_oauth_code(p_code_hash, p_client_id, p_redirect_uri, p_code_verifier)``."""
        return TokenGrantResult.from_json(
            self._run(
                "consume_oauth_code",
                {
                    "p_code_hash": p_code_hash,
                    "p_client_id": p_client_id,
                    "p_redirect_uri": p_redirect_uri,
                    "p_code_verifier": p_code_verifier,
                },
            )
        )

    def issue_refresh_token(
        self,
        *,
        p_token_hash: str,
        p_clerk_user_id: str,
        p_client_id: str,
        p_expires_at: datetime,
        p_clerk_org_id: str | None = None,
        p_oauth_code_id: UUID | None = None,
        p_email: str | None = None,
    ) -> UUID | None:
        """``public.issue_refresh_token(...)``: the new family's id."""
        return _uuid(
            self._run(
                "issue_refresh_token",
                {
                    "p_token_hash": p_token_hash,
                    "p_clerk_user_id": p_clerk_user_id,
                    "p_client_id": p_client_id,
                    "p_expires_at": p_expires_at,
                    "p_clerk_org_id": p_clerk_org_id,
                    "p_oauth_code_id": p_oauth_code_id,
                    "p_email": p_email,
                },
                shape="scalar",
            )
        )

    def rotate_refresh_token(
        self,
        *,
        p_old_token_hash: str,
        p_new_token_hash: str,
        p_client_id: str,
        p_new_expires_at: datetime,
        p_grace_seconds: int | None = None,
        p_max_lifetime_seconds: int | None = None,
    ) -> TokenGrantResult:
        """``public.rotate_refresh_token(...)``."""
        return TokenGrantResult.from_json(
            self._run(
                "rotate_refresh_token",
                {
                    "p_old_token_hash": p_old_token_hash,
                    "p_new_token_hash": p_new_token_hash,
                    "p_client_id": p_client_id,
                    "p_new_expires_at": p_new_expires_at,
                    "p_grace_seconds": p_grace_seconds,
                    "p_max_lifetime_seconds": p_max_lifetime_seconds,
                },
            )
        )

    def revoke_refresh_token(self, *, p_token_hash: str) -> bool | None:
        """``public.revoke_refresh_token(p_token_hash)``."""
        return _bool(
            self._run("revoke_refresh_token", {"p_token_hash": p_token_hash}, shape="scalar")
        )

    def purge_expired_tokens(self, *, p_retention: str | None = None) -> TokenPurgeResult:
        """``public.purge_expired_tokens(p_retention)``."""
        return TokenPurgeResult.from_json(
            self._run("purge_expired_tokens", {"p_retention": p_retention})
        )

    # -- device codes ----------------------------------------------------------
    def create_device_code(
        self,
        *,
        p_device_code_hash: str,
        p_user_code_hash: str,
        p_client_id: str,
        p_ttl_seconds: int | None = None,
        p_interval_seconds: int | None = None,
    ) -> datetime | None:
        """``public.create_device_code(...)``: the code's expiry."""
        return _datetime(
            self._run(
                "create_device_code",
                {
                    "p_device_code_hash": p_device_code_hash,
                    "p_user_code_hash": p_user_code_hash,
                    "p_client_id": p_client_id,
                    "p_ttl_seconds": p_ttl_seconds,
                    "p_interval_seconds": p_interval_seconds,
                },
                shape="scalar",
            )
        )

    def decide_device_code(
        self,
        *,
        p_user_code_hash: str,
        p_clerk_user_id: str,
        p_approve: bool,
        p_clerk_org_id: str | None = None,
        p_email: str | None = None,
    ) -> DeviceDecisionResult:
        """``public.decide_device_code(...)``."""
        return DeviceDecisionResult.from_json(
            self._run(
                "decide_device_code",
                {
                    "p_user_code_hash": p_user_code_hash,
                    "p_clerk_user_id": p_clerk_user_id,
                    "p_approve": p_approve,
                    "p_clerk_org_id": p_clerk_org_id,
                    "p_email": p_email,
                },
            )
        )

    def poll_device_code(self, *, p_device_code_hash: str, p_client_id: str) -> TokenGrantResult:
        """``public.poll_device_code(p_device_code_hash, p_client_id)``."""
        return TokenGrantResult.from_json(
            self._run(
                "poll_device_code",
                {"p_device_code_hash": p_device_code_hash, "p_client_id": p_client_id},
            )
        )

    def purge_expired_device_codes(self, *, p_retention: str | None = None) -> int | None:
        """``public.purge_expired_device_codes(p_retention)``: how many codes it deleted."""
        return _int(
            self._run("purge_expired_device_codes", {"p_retention": p_retention}, shape="scalar")
        )
