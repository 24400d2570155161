"""What a valid amount of credits is, defined once (F5).

The HTTP routes (``issuer.flows.usage.parse_amount``) and the CLI
(``issuer credits --amount``) both parse with :func:`parse_decimal`: ASCII
digits with an optional sign and fraction, nothing else. No exponent ("1e3"
is not 1000), no other digits than 0-9 ("٣" is not 3), no whitespace, no
"1_000", no hex, no NaN or Infinity. The database checks the rest (more than
0, at most 4 decimals, an upper bound) and names the argument (C5).
"""

from __future__ import annotations

import re
from decimal import Decimal

#: ASCII only (re.ASCII: \\d would also match other scripts' digits).
AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)

#: What a refusal says a valid amount looks like.
AMOUNT_HINT = "a decimal number such as 2.5 (digits 0-9, an optional fraction, no exponent)"


class InvalidAmount(ValueError):
    """Not an amount by the rule above."""


def parse_decimal(text: str) -> Decimal:
    """The Decimal of ``text``, or :class:`InvalidAmount`."""
    if not AMOUNT.fullmatch(text):
        raise InvalidAmount(f"amount must be {AMOUNT_HINT}")
    return Decimal(text)
