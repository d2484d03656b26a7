"""FED amounts as people type and read them: exact decimals, never floats; the same form in errors."""

from __future__ import annotations

import pytest

from fedchain.chain.errors import TransactionRevertedError
from fedchain.chain.units import ALL, AmountError, format_fed, format_wei, parse_fed

FED = 10**18


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("123456.789", 123456789 * 10**15),  # a float gives 123456789000000003637248
        ("1000", 1000 * FED), ("0.5", FED // 2), ("1e3", 1000 * FED), ("0.000000000000000001", 1),
        ("100 FED", 100 * FED), (" 7 ", 7 * FED), ("0", 0), ("0e100000000", 0),
        ("123456789012345.123456789012345678", 123456789012345123456789012345678),  # past Decimal's 28 digits
    ],
)
def test_parse_fed_is_exact(text, units):
    assert parse_fed(text) == units


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0000000000000000001", "more than 18 decimals"), ("-1", "non-negative"), ("nan", "non-negative"),
        ("Infinity", "non-negative"), ("1,000", "decimal number"), ("all", "decimal number"),
        ("1e100000000", "larger than any amount"),
    ],
)
def test_parse_fed_refuses_what_is_not_an_exact_amount(text, message):
    with pytest.raises(AmountError, match=message):
        parse_fed(text)


def test_all_is_accepted_only_where_it_makes_sense():
    assert parse_fed("all", allow_all=True) == ALL and parse_fed("ALL", allow_all=True) == ALL


@pytest.mark.parametrize("units", [0, 1, FED // 3, 123456789 * 10**15, 10**24, 2**256 - 1])
def test_a_shown_amount_parses_back_to_the_same_integer(units):
    assert parse_fed(format_fed(units)) == units


def test_format_fed_and_wei():
    assert format_fed(1500 * 10**15) == "1.5 FED" and format_fed(10**24) == "1000000 FED"
    assert format_wei(FED, wei=True) == "1 FED (1000000000000000000 wei)" and format_wei(FED) == "1 FED"
    assert format_fed(5 * 10**17, symbol="ETH") == "0.5 ETH"


def test_revert_arguments_that_are_amounts_are_shown_in_fed():
    error = TransactionRevertedError("stake", "ERC20InsufficientBalance",
                                     {"sender": "0x" + "11" * 20, "balance": FED // 2, "needed": 1000 * FED})
    assert str(error) == f"stake reverted: ERC20InsufficientBalance(sender=0x{'11' * 20}, balance=0.5 FED, needed=1000 FED)"
    other = TransactionRevertedError("submitUpdate", "TaskManagerRoundNotOpen", {"taskId": 3, "round": 1, "phase": 2})
    assert "taskId=3, round=1, phase=2" in str(other)
