"""Adversarial committee members for the demo: what a dishonest validator can try, as member behaviours.

    colluding  scores its accomplices (the demo's attacking contributors) high and every honest contributor 0
    lazy       reveals scores it did not compute: the same score for every input
    offline    commits and never reveals (slashed for it: a commitment without a reveal is a provable fault)

    behaviour = member_behaviour("colluding", accomplices=["0xAbc…"])
"""

from __future__ import annotations

from collections.abc import Sequence

from fedchain.core.consensus import integer_scores
from fedchain.errors import ConfigError
from fedchain.roles.member import Behaviour

MEMBER_ATTACKS = ("colluding", "lazy", "offline")


def member_behaviour(name: str, accomplices: Sequence[str] = ()) -> Behaviour:
    """The named behaviour ("honest" or one of MEMBER_ATTACKS)."""
    if name == "honest":
        return Behaviour()
    if name == "colluding":
        friends = {a.lower() for a in accomplices}

        def collude(round_index: int, inputs: Sequence[str], honest: tuple[int, ...]) -> tuple[int, ...]:
            mine = [1.0 if a.lower() in friends else 0.0 for a in inputs]
            return integer_scores(mine) if any(mine) else honest

        return Behaviour("colluding", rewrite=collude)
    if name == "lazy":
        def uniform(round_index: int, inputs: Sequence[str], honest: tuple[int, ...]) -> tuple[int, ...]:
            return integer_scores([1.0] * len(inputs)) if inputs else honest

        return Behaviour("lazy", rewrite=uniform)
    if name == "offline":
        return Behaviour("offline", reveals=False)
    raise ConfigError(f"unknown member behaviour {name!r}: use honest or one of {', '.join(MEMBER_ATTACKS)}")


def parse_member_attacks(text: str) -> dict[str, int]:
    """"colluding:1,offline:1" -> {"colluding": 1, "offline": 1}; a bare name counts 1; "" -> {}."""
    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, count_text = (s.strip() for s in part.partition(":"))
        if name not in MEMBER_ATTACKS:
            raise ConfigError(f"unknown validator attack {name!r}: use {', '.join(MEMBER_ATTACKS)}")
        if name in mix:
            raise ConfigError(f"validator attack {name!r} appears twice in {text!r}")
        try:
            count = int(count_text) if sep else 1
        except ValueError:
            raise ConfigError(f"count for {name!r} must be a positive integer, got {count_text!r}") from None
        if count < 1:
            raise ConfigError(f"count for {name!r} must be a positive integer, got {count}")
        mix[name] = count
    return mix


