"""Request and response models: the OpenAPI document is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

OrgId = Field(default=None, max_length=200, description="Clerk organization id (org_...)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OrgScopeDenial(BaseModel):
    clerk_org_id: str
    reason: Literal["not_a_member", "no_active_seat", "clerk_unavailable"] | str


class GenerateExtensionToken(Strict):
    name: str | None = Field(default=None, max_length=100)
    clerk_org_id: str | None = OrgId
    expires_in_days: int | None = Field(default=None, ge=1, le=365)
    require_org: bool = False


class RefreshExtensionToken(Strict):
    clerk_org_id: str | None = OrgId
    require_org: bool = False


class RevokeExtensionToken(Strict):
    token_id: str = Field(max_length=64)


class ExtensionTokenIssued(BaseModel):
    token: str
    token_id: str
    token_type: Literal["extension_long_lived"] = "extension_long_lived"
    expires_at: datetime
    claims: dict[str, Any]
    org_scope_denied: OrgScopeDenial | None = None


class ExtensionTokenInfo(BaseModel):
    id: str
    name: str | None = None
    clerk_org_id: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class CompleteVscodeAuth(Strict):
    client_id: str = Field(max_length=200)
    redirect_uri: str = Field(max_length=2000)
    state: str = Field(max_length=1024)
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(max_length=16)
    clerk_org_id: str | None = OrgId
    require_org: bool = False


class AuthorizationCodeIssued(BaseModel):
    code: str
    state: str
    redirect_to: str
    org_scope_denied: OrgScopeDenial | None = None


class TokenRequest(Strict):
    """The token endpoint's parameters (form-encoded or JSON)."""

    grant_type: str = Field(max_length=64)
    code: str | None = Field(default=None, max_length=512)
    code_verifier: str | None = Field(default=None, max_length=512)
    redirect_uri: str | None = Field(default=None, max_length=2000)
    client_id: str | None = Field(default=None, max_length=200)
    refresh_token: str | None = Field(default=None, max_length=512)
    device_code: str | None = Field(default=None, max_length=512)
    clerk_org_id: str | None = OrgId
    require_org: bool = False


class DeviceAuthorizationRequest(Strict):
    """RFC 8628 §3.1: the public client's id (``scope`` is accepted and ignored)."""

    client_id: str | None = Field(default=None, max_length=200)
    scope: str | None = Field(default=None, max_length=1000)


class DeviceAuthorizationIssued(BaseModel):
    """RFC 8628 §3.2."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class TokenIssued(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str | None = None
    pool: Literal["organization", "personal"]
    org_scope_denied: OrgScopeDenial | None = None


class RevokeRequest(Strict):
    token: str = Field(min_length=1, max_length=8192)
    token_type_hint: str | None = Field(default=None, max_length=64)


class ScopeRequest(Strict):
    clerk_org_id: str | None = OrgId
    require_org: bool = False


class AccessTokenIssued(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    pool: Literal["organization", "personal"]
    org_scope_denied: OrgScopeDenial | None = None


class DashboardTokenIssued(BaseModel):
    token: str
    expires_at: datetime
    claims: dict[str, Any]
    org_scope_denied: OrgScopeDenial | None = None


class Validation(BaseModel):
    valid: bool
    claims: dict[str, Any] | None = None
    error: str | None = None
    org_scope: Literal["active", "lost"] | None = Field(
        default=None,
        description="Org-scoped tokens only: is the seat behind the org claims still active? (L5)",
    )
    org_scope_reason: str | None = Field(
        default=None, description="Why the org scope is lost (no_active_seat)"
    )


class UsageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    amount: StrictInt | StrictFloat | StrictStr = Field(
        description="Credits to spend, > 0 (a JSON number or a decimal string)"
    )
    description: str = Field(max_length=500)
    context: dict[str, Any] | None = None


class UsageCharged(BaseModel):
    ok: Literal[True] = True
    pool: Literal["organization", "personal"]
    remaining: float = Field(description="Balance of the pool after this deduction")
    transaction_id: str | None
    replayed: bool


class ErrorBody(BaseModel):
    error: str
    error_description: str | None = None


class VersionInfo(BaseModel):
    version: str = Field(
        description="The release version: the wheel's, the Supabase bundle's and the extension's"
    )
