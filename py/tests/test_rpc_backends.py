"""The RPC client's two backends against the real test database.

* psycopg (DATABASE_URL): the issuer's default.
* supabase-py over PostgREST: exercised through a PostgREST-compatible DOUBLE
  (support/postgrest_double.py), because no PostgREST binary can be installed
  on this machine. The double runs every call in the real database, as
  service_role, with PostgREST's wire format; supabase-py is the real client.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from issuer.errors import DatabaseUnavailable
from issuer.rpc import PostgrestRpc, PsycopgRpc, Rpc, RpcConflict, RpcError
from issuer.rpc_generated import SeatOverviewRow
from support.postgrest_double import PostgrestDouble, running_postgrest_double
from support.world import World

SERVICE_KEY = "service-role-key-for-the-double"


@pytest.fixture(scope="module")
def double(world: World) -> Iterator[PostgrestDouble]:
    with running_postgrest_double(world.db_url, SERVICE_KEY) as d:
        yield d


@pytest.fixture(params=["psycopg", "postgrest"])
def rpc(request: pytest.FixtureRequest, world: World) -> Iterator[Rpc]:
    if request.param == "psycopg":
        client = Rpc(PsycopgRpc(world.db_url, max_size=2))
    else:
        d = request.getfixturevalue("double")
        client = Rpc(PostgrestRpc(d.url, SERVICE_KEY))
    try:
        yield client
    finally:
        client.close()


def test_grant_and_deduct_round_trip_with_exact_decimals(rpc: Rpc, world: World) -> None:
    user = world.user()
    granted = rpc.grant_credits(p_amount="10.1234", p_description="welcome", p_clerk_user_id=user)
    assert granted.ok and granted.balance == Decimal("10.1234")
    spent = rpc.deduct_credits_pooled(
        p_clerk_user_id=user, p_amount="0.1234", p_description="call", p_idempotency_key="k1"
    )
    assert spent.ok and spent.pool == "personal"
    assert spent.balance == Decimal("10.0000")
    replay = rpc.deduct_credits_pooled(
        p_clerk_user_id=user, p_amount="0.1234", p_description="call", p_idempotency_key="k1"
    )
    assert replay.replayed and replay.transaction_id == spent.transaction_id
    assert world.personal_balance(user) == Decimal(10)


def test_refusals_are_results(rpc: Rpc, world: World) -> None:
    org = world.org(pool=1)
    user = world.user(personal=100)
    refused = rpc.deduct_credits_pooled(
        p_clerk_user_id=user, p_amount=1, p_description="x", p_clerk_org_id=org
    )
    assert not refused.ok and refused.reason == "no_active_seat"
    assert (
        rpc.deduct_credits_pooled(
            p_clerk_user_id="user_nobody", p_amount=1, p_description="x"
        ).reason
        == "unknown_user"
    )


def test_bad_input_is_an_error_naming_the_argument(rpc: Rpc, world: World) -> None:
    user = world.user(personal=1)
    with pytest.raises(RpcError) as info:
        rpc.deduct_credits_pooled(p_clerk_user_id=user, p_amount=0, p_description="x")
    assert info.value.sqlstate == "22023"
    assert "p_amount" in str(info.value)


def test_reused_idempotency_key_with_other_arguments_is_a_conflict(rpc: Rpc, world: World) -> None:
    user = world.user(personal=10)
    rpc.deduct_credits_pooled(
        p_clerk_user_id=user, p_amount=1, p_description="x", p_idempotency_key="same"
    )
    with pytest.raises(RpcConflict):
        rpc.deduct_credits_pooled(
            p_clerk_user_id=user, p_amount=2, p_description="x", p_idempotency_key="same"
        )


def test_attribution_is_seat_gated(rpc: Rpc, world: World) -> None:
    org = world.org(pool=5, name="Gated Co")
    member, suspended = world.user(), world.user()
    world.seat(org, member)
    world.seat(org, suspended, status="suspended")
    row = rpc.resolve_org_attribution(p_clerk_user_id=member, p_clerk_org_id=org)
    assert row is not None and row.organization_name == "Gated Co"
    assert rpc.resolve_org_attribution(p_clerk_user_id=suspended, p_clerk_org_id=org) is None


def test_seat_overview_is_a_table_of_every_seat_by_org_name(rpc: Rpc, world: World) -> None:
    """A ``returns table`` RPC arrives as its rows, in order, through both backends."""
    active, suspended = world.org(pool=1, name="B Active"), world.org(pool=1, name="A Held")
    user = world.user()
    world.seat(active, user)
    world.seat(suspended, user, status="suspended")
    assert rpc.seat_overview(p_clerk_user_id=user) == [
        SeatOverviewRow(suspended, "A Held", "member", "suspended", False),
        SeatOverviewRow(active, "B Active", "member", "active", True),
    ]
    assert rpc.seat_overview(p_clerk_user_id="user_nobody") == []


def test_postgrest_double_checks_the_key(world: World, double: PostgrestDouble) -> None:
    bad = Rpc(PostgrestRpc(double.url, "wrong-key"))
    with pytest.raises(DatabaseUnavailable):
        bad.deduct_credits_pooled(p_clerk_user_id=world.user(), p_amount=1, p_description="x")


def test_unreachable_database_is_unavailable_not_an_error() -> None:
    client = Rpc(PsycopgRpc("postgresql://postgres@127.0.0.1:1/none", acquire_timeout=1))
    try:
        with pytest.raises(DatabaseUnavailable):
            client.deduct_credits_pooled(p_clerk_user_id="user_x", p_amount=1, p_description="x")
        assert client.ping() is False
    finally:
        client.close()


def test_org_scoped_issuance_is_one_database_round_trip(world: World) -> None:
    """Issue 4 acceptance: an org-scoped token costs exactly one statement.

    The Clerk session names the org (claims first, no Clerk API call); the
    seat and every attribution field come from resolve_org_attribution.
    """
    org = world.org(pool=5)
    alice = world.user()
    world.seat(org, alice, role="admin")
    backend = world.issuer.rpc.backend
    assert isinstance(backend, PsycopgRpc)
    world.clerk.reset_calls()
    before = backend.statements_sent
    r = world.client.post(
        "/api/dashboard-token/generate",
        json={"clerk_org_id": org},
        headers=world.clerk_auth(alice, org_id=org, org_role="admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["claims"]["pool"] == "organization"
    assert backend.statements_sent - before == 1
    assert world.clerk.api_calls == 0


def test_statements_are_rendered_once_and_reused(world: World) -> None:
    """psycopg would render a composed statement on every call; we render it once
    per client encoding and send the same bytes from every pooled connection."""
    backend = PsycopgRpc(world.db_url, max_size=2, min_size=2, open_wait=True)
    rpc = Rpc(backend)
    try:
        org = world.org(pool=5)
        user = world.user()
        world.seat(org, user)
        for _ in range(4):  # both connections of the pool, several times
            assert rpc.resolve_org_attribution(p_clerk_user_id=user, p_clerk_org_id=org) is not None
            assert rpc.ping()
        rendered = {key[0]: stmt.rendered for key, stmt in backend._sql_cache.items()}
        assert list(rendered) == ["resolve_org_attribution"]
        (encoding, text), *others = rendered["resolve_org_attribution"].items()
        assert others == [] and encoding == "utf-8"
        assert text == (
            b'select pg_catalog.to_jsonb(r) from public."resolve_org_attribution"('
            b'"p_clerk_org_id" => %(p_clerk_org_id)s, "p_clerk_user_id" => %(p_clerk_user_id)s)'
            b" as r"
        )
        assert rpc.resolve_org_attribution(p_clerk_user_id=user, p_clerk_org_id=org) is not None
        assert backend._sql_cache[next(iter(backend._sql_cache))].rendered[encoding] is text
    finally:
        rpc.close()
