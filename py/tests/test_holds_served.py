"""H1 through a real `issuer serve`: the issuer restarted (killed) with live holds.

A hold lives in the database, not in the issuer: authorize through one
process, kill it (SIGKILL, no shutdown), start another, and the holds are
captured, voided or refused as expired there, with the balance, held and the
ledger exact.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from issuer_dev.fake_clerk import FakeClerk
from issuer_dev.served import issuer_serve
from support.world import World, issuer_env


def _post(http: httpx.Client, token: str, path: str, **body: Any) -> httpx.Response:
    return http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def _held(world: World, clerk_org_id: str) -> Decimal:
    rows = world.sql(
        "select s.held from public.organization_subscriptions as s "
        "join public.organizations as o on o.id = s.organization_id "
        "where o.clerk_org_id = %s and s.is_current",
        (clerk_org_id,),
    )
    return Decimal(rows[0][0])


def test_H1_issuer_killed_and_restarted_with_live_holds(
    world: World, fake_clerk: FakeClerk, tmp_path_factory: pytest.TempPathFactory
) -> None:
    org = world.org(pool=50, name="Restart Inc")
    alice = world.user()
    world.seat(org, alice)
    token = world.extension_token(alice, org)
    env = issuer_env(world.db_url, fake_clerk)

    with issuer_serve(env, tmp_path_factory.mktemp("holds-1")) as first:
        with httpx.Client(base_url=first.url, timeout=10) as http:
            a = _post(
                http, token, "/api/extension/usage/authorize", amount=10, description="stream a"
            ).json()
            b = _post(
                http, token, "/api/extension/usage/authorize", amount=5, description="stream b"
            ).json()
            c = _post(
                http,
                token,
                "/api/extension/usage/authorize",
                amount=30,
                description="stream c",
                ttl_seconds=1,
            )
            assert c.status_code == 200, c.text
        first.process.kill()  # no graceful shutdown
        first.process.wait(timeout=10)
    assert _held(world, org) == Decimal(45), "the holds outlive the process"

    time.sleep(1.1)  # hold c is past its expiry
    with issuer_serve(env, tmp_path_factory.mktemp("holds-2")) as second:
        with httpx.Client(base_url=second.url, timeout=10) as http:
            captured = _post(
                http, token, "/api/extension/usage/capture", hold_id=a["hold_id"], amount=4
            )
            assert captured.status_code == 200, captured.text
            assert captured.json()["remaining"] == 46
            voided = _post(http, token, "/api/extension/usage/void", hold_id=b["hold_id"])
            assert voided.status_code == 200, voided.text
            late = _post(
                http, token, "/api/extension/usage/capture", hold_id=c.json()["hold_id"], amount=1
            )
            assert late.status_code == 409 and late.json()["error"] == "hold_expired"
            # c's 30 still counts in held until an authorize needs it and sweeps it.
            big = _post(
                http,
                token,
                "/api/extension/usage/authorize",
                amount=46,
                description="needs c's credits",
            )
            assert big.status_code == 200, big.text
            assert (
                _post(
                    http, token, "/api/extension/usage/void", hold_id=big.json()["hold_id"]
                ).status_code
                == 200
            )
    assert world.pool_balance(org) == Decimal(46)
    assert _held(world, org) == Decimal(0)
    assert world.consistency_problems() == []
