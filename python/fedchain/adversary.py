"""Demo attackers wired into the contributor client (the behaviours themselves are in fedchain.attacks).

Each attacker is a normal contributor whose data or update is rewritten; the copycat trains nothing and
resubmits another contributor's update as its own as soon as that update's digest appears on chain.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from fedchain import attacks
from fedchain.chain.errors import TransactionRevertedError
from fedchain.content.cid import cid_to_digest, digest_to_cid
from fedchain.contributor import Contributor, RoundOutcome
from fedchain.envelope import UpdateEnvelope, decode_update, encode_update
from fedchain.errors import ConfigError

log = logging.getLogger(__name__)

SIGN_FLIP_SCALE = 5.0
NOISE_STD = 0.05


class CopycatContributor(Contributor):
    """Copies the first other update of each round: sealed bytes as they are, unsealed ones slightly perturbed."""

    def contribute_round(self, round_index: int, x: np.ndarray, y: np.ndarray) -> RoundOutcome | None:
        victim = None
        while victim is None:
            if not self._open_now(round_index):
                return None
            others = [
                s for s in self.protocol.submissions(self.config.task_id, round_index)
                if s.contributor != self.account.address
            ]
            victim = others[0] if others else None
            if victim is None:
                time.sleep(self.config.poll_interval / 2)
        if self.task.spec.sealed:
            digest = victim.digest  # the sealed bytes are opaque: resubmit them unchanged
        else:
            stolen = decode_update(self.ipfs.cat(digest_to_cid(victim.digest)), self.task.layout.expected_tensors(),
                                   max_bytes=self.task.spec.max_update_bytes)
            tensors = {k: attacks.perturb_copy(v, 0.01, seed=round_index) for k, v in stolen.tensors.items()}
            copy = UpdateEnvelope(self.config.task_id, round_index, stolen.base_model_cid, stolen.num_samples,
                                  self.account.address, tensors)
            digest = cid_to_digest(self.ipfs.add_bytes(encode_update(copy)))
        try:
            tx = self.protocol.submit_update(self.account, self.config.task_id, round_index, digest, victim.num_samples)
        except TransactionRevertedError as exc:
            log.warning("round %d: copy refused: %s", round_index, exc)
            return None
        return RoundOutcome(round_index, digest_to_cid(digest), victim.num_samples, 0.0, tx.gas_used)


def configure_attacker(contributor: Contributor, name: str) -> Contributor:
    """Turn an honest contributor into the named attacker."""
    config = contributor.config
    num_classes = contributor.task.spec.num_classes
    if name == "label-flip":
        config = _replace(config, label_transform=lambda y: attacks.label_flip(y, num_classes))
    elif name == "sign-flip":
        config = _replace(config, update_transform=lambda d, seed: {k: attacks.sign_flip(v, SIGN_FLIP_SCALE) for k, v in d.items()})
    elif name == "noise":
        config = _replace(config, update_transform=lambda d, seed: _per_tensor(d, seed, lambda v, s: attacks.noise_update(v, NOISE_STD, s)))
    elif name == "free-rider":
        config = _replace(config, update_transform=lambda d, seed: _per_tensor(d, seed, lambda v, s: attacks.free_rider(v, 0.0, s)))
    elif name == "copycat":
        return CopycatContributor(contributor.protocol, contributor.ipfs, contributor.account, config)
    else:
        raise ConfigError(f"unknown attack {name!r}; known: label-flip, sign-flip, noise, free-rider, copycat")
    return Contributor(contributor.protocol, contributor.ipfs, contributor.account, config)


def _replace(config, **changes):
    from dataclasses import replace

    return replace(config, **changes)


def _per_tensor(delta: dict[str, torch.Tensor], seed: int, fn) -> dict[str, torch.Tensor]:
    return {name: fn(tensor, seed * 7919 + i) for i, (name, tensor) in enumerate(sorted(delta.items()))}
