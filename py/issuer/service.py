"""The issuer's parts, wired once: settings, keys, database, Clerk, OAuth clients.

Flows take an :class:`Issuer` and nothing global, so tests build one with a
real database and the fake Clerk, and the HTTP app builds one at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from issuer.clerk import ClerkClient, ClerkSessionVerifier
from issuer.flows.clients import OAuthClients
from issuer.rpc import Rpc, make_rpc
from issuer.settings import Settings
from issuer.signing import KeyRing


@dataclass
class Issuer:
    settings: Settings
    keys: KeyRing
    rpc: Rpc
    sessions: ClerkSessionVerifier
    clerk: ClerkClient
    clients: OAuthClients

    @classmethod
    def from_settings(cls, settings: Settings, *, rpc: Rpc | None = None) -> Issuer:
        """Build every part; a missing or bad setting raises ConfigError naming it."""
        return cls(
            settings=settings,
            keys=KeyRing.from_settings(settings),
            rpc=rpc
            or make_rpc(
                database_url=settings.database_url,
                supabase_url=settings.supabase_url,
                service_role_key=(
                    settings.supabase_service_role_key.get_secret_value()
                    if settings.supabase_service_role_key
                    else None
                ),
                role=settings.database_role or None,
                max_size=settings.database_pool_size,
                pooler=settings.database_pooler,
            ),
            sessions=ClerkSessionVerifier.from_settings(settings),
            clerk=ClerkClient.from_settings(settings),
            clients=OAuthClients.parse(settings.oauth_clients),
        )

    def close(self) -> None:
        self.rpc.close()
        self.sessions.close()
        self.clerk.close()
