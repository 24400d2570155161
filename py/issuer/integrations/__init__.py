"""Helpers for OTHER backends that accept the issuer's tokens.

* :mod:`issuer.integrations.fastapi`: :class:`~issuer.integrations.fastapi.TokenVerifier`
  and the FastAPI dependency ``require_token`` (docs/backend-integration.md).
"""
