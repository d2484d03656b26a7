"""Token amounts for people: exact decimal parsing and one display form (FED with its decimals).

    parse_fed("123456.789")          # 123456789000000000000000, exactly (never through a float)
    parse_fed("all", allow_all=True) # ALL: the caller substitutes the whole balance or stake
    format_fed(10**18 // 2)          # "0.5 FED": exact, so it can be pasted back into --amount

On chain and in JSON reports amounts stay integers in the smallest unit ("wei"); everything a person reads or types
goes through these two functions, so a shown amount always parses back to the same integer.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

from fedchain.errors import ConfigError

FED_DECIMALS: Final = 18
FED: Final = 10**FED_DECIMALS
ALL: Final = -1  # what parse_fed returns for "all" (allow_all=True); never a valid amount


class AmountError(ConfigError):
    """Raised when an amount typed by a person is not a non-negative decimal with at most the token's decimals."""


def parse_fed(text: str, *, allow_all: bool = False, decimals: int = FED_DECIMALS, symbol: str = "FED") -> int:
    """The smallest-unit integer of a decimal amount such as "1000", "0.5" or "1e3" (an optional trailing symbol is
    accepted, so a shown amount can be pasted back). "all" gives ALL when `allow_all`. Never rounds."""
    raw = text.strip()
    if raw.lower().endswith(symbol.lower()):
        raw = raw[: -len(symbol)].strip()
    if allow_all and raw.lower() == "all":
        return ALL
    try:
        value = Decimal(raw)
    except InvalidOperation:
        accepted = "a decimal number" + (" or 'all'" if allow_all else "")
        raise AmountError(f"{text!r} is not an amount of {symbol}: give {accepted}, e.g. 1000 or 0.5") from None
    if not value.is_finite() or value < 0:
        raise AmountError(f"{text!r} is not an amount of {symbol}: give a non-negative number")
    # Exact integer arithmetic on the digits (Decimal's own arithmetic rounds to 28 significant digits).
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    mantissa = int("".join(map(str, digits)) or "0")
    shift = exponent + decimals
    if mantissa == 0:
        return 0
    if len(digits) + shift > 78:  # uint256 has 78 decimal digits; also keeps 10**shift small
        raise AmountError(f"{text!r} is larger than any amount of {symbol} a contract can hold")
    if shift >= 0:
        return mantissa * 10**shift
    units, rest = divmod(mantissa, 10**-shift)
    if rest:
        raise AmountError(
            f"{text!r} has more than {decimals} decimals: {symbol} has {decimals}, so the smallest amount is "
            f"{format_fed(1, decimals=decimals, symbol=symbol)}"
        )
    return units


def format_fed(units: int, *, decimals: int = FED_DECIMALS, symbol: str = "FED") -> str:
    """`units` of the smallest unit as an exact decimal with its symbol: 1500000000000000000 -> "1.5 FED"."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(int(units)), 10**decimals)
    digits = f"{frac:0{decimals}d}".rstrip("0") if decimals else ""
    return f"{sign}{whole}{'.' + digits if digits else ''} {symbol}".rstrip()


def format_wei(units: int, *, wei: bool = False, decimals: int = FED_DECIMALS, symbol: str = "FED") -> str:
    """format_fed, followed by the raw integer when the person asked for it (--wei)."""
    shown = format_fed(units, decimals=decimals, symbol=symbol)
    return f"{shown} ({int(units)} wei)" if wei else shown
