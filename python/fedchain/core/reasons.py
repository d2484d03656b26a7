"""Reason codes: why an update was rejected or discarded. One enum for every module that judges updates.

The values are the strings that round reports carry (docs/PROTOCOL.md lists them). `Reason` mixes in `str`, so a
member compares equal to its value and serialises as it.
"""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    # fetching the content
    UNAVAILABLE = "unavailable"            # the CID could not be fetched in time
    TOO_LARGE = "too-large"                # over the spec's max_update_bytes
    # the envelope
    MALFORMED = "malformed"                # not a safetensors file
    BAD_METADATA = "bad-metadata"          # metadata missing, not canonical, or contradicting the chain
    UNEXPECTED_TENSOR = "unexpected-tensor"
    MISSING_TENSOR = "missing-tensor"
    WRONG_SHAPE = "wrong-shape"
    WRONG_DTYPE = "wrong-dtype"
    NON_FINITE = "non-finite"              # NaN or infinity in the update
    # sealing
    TAMPERED = "tampered"                  # the ciphertext does not open (modified or wrong key)
    NOT_A_RECIPIENT = "not-a-recipient"    # not sealed to this validator
    NOT_SEALED = "not-sealed"              # plaintext sent to a sealed task
    BINDING_MISMATCH = "binding-mismatch"  # sealed for another task, round or sender
    # the round
    REPLAY = "replay"                      # bytes submitted before, or bound to another sender, task or round
    WRONG_BASE = "wrong-base"              # trained from another global model
    TOO_MANY_SAMPLES = "too-many-samples"  # claims more samples than the policy allows
    NO_SAMPLES = "no-samples"              # claims zero samples: it would carry no weight in the merge
    # privacy (fedchain.privacy.declaration); a declaration breaking the spec is BAD_METADATA
    PRIVACY_ACCOUNTING = "privacy-accounting"  # declared epsilon off the accountant's by more than 1%
    # screening
    DUPLICATE = "duplicate"                # one of several near-copies of each other (unsealed tasks); never slashed
    FREE_RIDER = "free-rider"              # (almost) no change from the global model
    NORM_OUTLIER = "norm-outlier"          # far larger than the others

    def __str__(self) -> str:
        return self.value


# Reasons whose evidence is the submitted content itself (its digest is on chain): only these may slash.
# `unavailable` is not here: a validator cannot prove it failed to fetch something. Nor is `duplicate`: two
# near-copies prove that one copied the other, not which one (chain order is the front-runner's to choose).
PROVABLE = frozenset(
    {
        Reason.MALFORMED, Reason.BAD_METADATA, Reason.UNEXPECTED_TENSOR, Reason.MISSING_TENSOR, Reason.WRONG_SHAPE,
        Reason.WRONG_DTYPE, Reason.NON_FINITE, Reason.TOO_LARGE, Reason.REPLAY, Reason.WRONG_BASE,
        Reason.TAMPERED, Reason.NOT_A_RECIPIENT, Reason.NOT_SEALED,
    }
)


def discarded_by(rule: str) -> str:
    """The reason of an update a robust rule left out of the merge (never slashed)."""
    return f"discarded-by-{rule}"
