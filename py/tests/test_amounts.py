"""F5: one definition of a valid amount (issuer.amounts), for HTTP and the CLI.

Before, the HTTP routes accepted an exponent ("1e3") and, through Python's
Unicode ``\\d``, other scripts' digits ("٣" for 3); the CLI took anything
``Decimal()`` takes. Both now parse with ``issuer.amounts.parse_decimal``
(the CLI's side: test_cli.py::test_F5_amounts_are_ascii_decimals_without_exponent).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from issuer.amounts import InvalidAmount, parse_decimal
from support.world import World

REFUSED = ["1e3", "1E3", "1.5e1", "\u0663", "\uff11", "1\u0663", "1_000", " 1", "1 ", "0x10",
           "NaN", "Infinity", "", ".", "+", "1.2.3"]  # fmt: skip
ACCEPTED = {"2.5": "2.5", "10": "10", ".5": "0.5", "3.": "3", "-1": "-1", "+0.0001": "0.0001"}


@pytest.mark.parametrize("text", REFUSED)
def test_F5_parse_decimal_refuses_all_but_ascii_decimals(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_decimal(text)


@pytest.mark.parametrize(("text", "value"), ACCEPTED.items())
def test_F5_parse_decimal_accepts_plain_decimals(text: str, value: str) -> None:
    assert parse_decimal(text) == Decimal(value)


def test_F5_http_amounts_follow_the_same_rule(world: World) -> None:
    org = world.org(pool=5000)
    alice = world.user()
    world.seat(org, alice)
    headers = {"Authorization": f"Bearer {world.extension_token(alice, org)}"}
    for path in ("/api/extension/usage", "/api/extension/usage/authorize"):
        for amount in ("1e3", "\u0663", "\uff11"):
            r = world.client.post(
                path, json={"amount": amount, "description": "x"}, headers=headers
            )
            assert r.status_code == 400, (path, amount, r.text)
            assert "no exponent" in r.json()["error_description"], r.text
        ok = world.client.post(path, json={"amount": "3", "description": "x"}, headers=headers)
        assert ok.status_code == 200, ok.text
    assert world.pool_balance(org) == Decimal(4997), "only the plain '3' was charged"
