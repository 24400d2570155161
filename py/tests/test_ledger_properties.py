"""Property test: random sequences of grants, deductions, refunds, seat changes and
retries across users and organizations agree with a small model of the rules.

Hypothesis drives a state machine against the real RPCs (as ``service_role``)
and a Python model that knows only the documented rules: org pools need an
active seat and never fall back to personal credits; nothing goes below zero;
refunds never exceed what is left of a deduction; a repeated idempotency key
replays, a reused one with other arguments is an error (23505). After every
step the database's balances equal the model's, none is negative, and
``credit_consistency_check()`` is empty.

Bounded to run in seconds: ``max_examples=40``, 25 steps each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from support import credits

USERS = 3
ORGS = 2
KEYS = [None, None, "k1", "k2", "k3"]
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("40"), places=2)
seat_statuses = st.sampled_from(["active", "active", "pending", "suspended", "revoked"])


@dataclass
class Deduction:
    transaction_id: uuid.UUID
    pool: str  # model pool key
    amount: Decimal
    refunded: Decimal = Decimal(0)


class CreditModel(RuleBasedStateMachine):
    db_url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.conn = credits.connect_service_role(self.db_url)
        self.balances: dict[str, Decimal] = {}
        self.seats: dict[tuple[int, int], str] = {}
        self.deductions: list[Deduction] = []
        # (scope, key) -> (request, first result) of successful keyed requests
        self.keys: dict[tuple[str, str], tuple[tuple[Any, ...], credits.CreditResult]] = {}
        self.requests: list[tuple[str, tuple[Any, ...]]] = []

    # -- naming -----------------------------------------------------------------
    def user(self, u: int) -> str:
        return f"user_{self.tag}_{u}"

    def org(self, o: int) -> str:
        return f"org_{self.tag}_{o}"

    @initialize()
    def world(self) -> None:
        self.tag = uuid.uuid4().hex[:10]
        for u in range(USERS):
            credits.create_user(self.conn, self.user(u))
            self.balances[self.user(u)] = Decimal(0)
        for o in range(ORGS):
            credits.create_org(self.conn, self.org(o))
            credits.create_subscription(self.conn, self.org(o))
            self.balances[self.org(o)] = Decimal(0)
            for u in range(USERS):
                credits.create_seat(self.conn, self.org(o), self.user(u), status="active")
                self.seats[(u, o)] = "active"

    def teardown(self) -> None:
        self.conn.close()

    # -- rules ------------------------------------------------------------------
    @rule(u=st.integers(0, USERS - 1), amount=amounts, key=st.sampled_from(KEYS))
    def grant_personal(self, u: int, amount: Decimal, key: str | None) -> None:
        request = ("grant", self.user(u), None, amount)
        self._keyed(
            f"user:{u}:grant", key, request, lambda: self._grant(self.user(u), None, amount, key)
        )

    @rule(o=st.integers(0, ORGS - 1), amount=amounts, key=st.sampled_from(KEYS))
    def grant_org(self, o: int, amount: Decimal, key: str | None) -> None:
        request = ("grant", None, self.org(o), amount)
        self._keyed(
            f"org:{o}:grant", key, request, lambda: self._grant(None, self.org(o), amount, key)
        )

    @rule(
        u=st.integers(0, USERS - 1),
        o=st.one_of(st.none(), st.integers(0, ORGS - 1)),
        amount=amounts,
        key=st.sampled_from(KEYS),
    )
    def deduct(self, u: int, o: int | None, amount: Decimal, key: str | None) -> None:
        scope = self._deduction_scope(u, o)
        request = ("deduct", self.user(u), None if o is None else self.org(o), amount)
        self._keyed(scope, key, request, lambda: self._deduct(u, o, amount, key))

    @precondition(lambda self: bool(self.deductions))
    @rule(data=st.data(), whole=st.booleans())
    def refund(self, data: st.DataObject, whole: bool) -> None:
        d = data.draw(st.sampled_from(self.deductions))
        left = d.amount - d.refunded
        amount = None if whole else data.draw(amounts)
        result = credits.refund(self.conn, d.transaction_id, amount)
        wanted = left if amount is None else amount
        if left <= 0 or wanted > left:
            assert (result.ok, result.reason) == (False, "refund_exceeds_remaining")
            return
        assert result.ok, result
        assert result.amount == wanted
        d.refunded += wanted
        self.balances[d.pool] += wanted
        assert result.balance == self.balances[d.pool]

    @rule(u=st.integers(0, USERS - 1), o=st.integers(0, ORGS - 1), status=seat_statuses)
    def set_seat(self, u: int, o: int, status: str) -> None:
        credits.set_seat_status(self.conn, self.org(o), self.user(u), status)
        self.seats[(u, o)] = status

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """An exact repeat of a keyed request that succeeded replays its first result."""
        (_scope, key), (request, first) = data.draw(
            st.sampled_from(sorted(self.keys.items(), key=str))
        )
        kind, clerk_user_id, clerk_org_id, amount = request
        if kind == "grant":
            again = credits.grant(
                self.conn,
                amount,
                "prop grant",
                clerk_user_id=clerk_user_id,
                clerk_org_id=clerk_org_id,
                idempotency_key=key,
            )
        else:
            again = credits.deduct(
                self.conn,
                clerk_user_id,
                amount,
                "prop deduct",
                clerk_org_id=clerk_org_id,
                idempotency_key=key,
            )
        assert again.replayed and again.ok
        assert (again.transaction_id, again.amount, again.balance) == (
            first.transaction_id,
            first.amount,
            first.balance,
        )

    # -- helpers ----------------------------------------------------------------
    def _keyed(self, scope: str, key: str | None, request: tuple[Any, ...], call: Any) -> None:
        if key is not None and (scope, key) in self.keys:
            first_request, _ = self.keys[(scope, key)]
            if first_request != request:
                with pytest.raises(psycopg.errors.UniqueViolation):
                    call()
                return
        result = call()
        if key is not None and result is not None and result.ok:
            self.keys.setdefault((scope, key), (request, result))

    def _grant(
        self, clerk_user_id: str | None, clerk_org_id: str | None, amount: Decimal, key: str | None
    ) -> credits.CreditResult:
        pool = clerk_user_id or clerk_org_id
        assert pool is not None
        scope_key = self._scope_of(clerk_user_id, clerk_org_id)
        result = credits.grant(
            self.conn,
            amount,
            "prop grant",
            clerk_user_id=clerk_user_id,
            clerk_org_id=clerk_org_id,
            idempotency_key=key,
        )
        if key is not None and (scope_key, key) in self.keys:
            assert result.replayed
            return result
        assert result.ok and not result.replayed, result
        self.balances[pool] += amount
        assert result.balance == self.balances[pool]
        return result

    def _deduct(
        self, u: int, o: int | None, amount: Decimal, key: str | None
    ) -> credits.CreditResult:
        clerk_org_id = None if o is None else self.org(o)
        pool = self.user(u) if o is None else self.org(o)
        scope_key = self._deduction_scope(u, o)
        result = credits.deduct(
            self.conn,
            self.user(u),
            amount,
            "prop deduct",
            clerk_org_id=clerk_org_id,
            idempotency_key=key,
        )
        if key is not None and (scope_key, key) in self.keys:
            assert result.ok and result.replayed, result
            return result
        if o is not None and self.seats[(u, o)] != "active":
            assert (result.ok, result.reason) == (False, "no_active_seat"), result
        elif self.balances[pool] < amount:
            assert (result.ok, result.reason) == (False, "insufficient_credits"), result
            assert result.balance == self.balances[pool]
        else:
            assert result.ok and not result.replayed, result
            assert result.transaction_id is not None
            self.balances[pool] -= amount
            assert result.balance == self.balances[pool]
            self.deductions.append(Deduction(result.transaction_id, pool, amount))
        return result

    def _scope_of(self, clerk_user_id: str | None, clerk_org_id: str | None) -> str:
        """A grant's key namespace: the pool owner's grants (L7)."""
        if clerk_org_id is not None:
            return f"org:{clerk_org_id.rsplit('_', 1)[1]}:grant"
        assert clerk_user_id is not None
        return f"user:{clerk_user_id.rsplit('_', 1)[1]}:grant"

    @staticmethod
    def _deduction_scope(u: int, o: int | None) -> str:
        """A deduction's key namespace: its spender in its pool (L7)."""
        return f"user:{u}:deduct" if o is None else f"org:{o}:deduct:{u}"

    # -- invariants -------------------------------------------------------------
    @invariant()
    def balances_match_the_model(self) -> None:
        if not self.balances:
            return
        for pool, expected in self.balances.items():
            if pool.startswith("org_"):
                actual = credits.pool_balance(self.conn, pool)
                assert credits.ledger_sum(self.conn, clerk_org_id=pool) == actual
            else:
                actual = credits.personal_balance(self.conn, pool)
                assert credits.ledger_sum(self.conn, clerk_user_id=pool) == actual
            assert actual == expected, pool
            assert actual >= 0

    @invariant()
    def ledger_is_consistent(self) -> None:
        assert credits.consistency_problems(self.conn) == []


@pytest.fixture(scope="module")
def machine(db_url: str) -> Iterator[type[CreditModel]]:
    CreditModel.db_url = db_url
    yield CreditModel


def test_random_sequences_agree_with_the_model(machine: type[CreditModel]) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
