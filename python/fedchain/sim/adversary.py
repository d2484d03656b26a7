"""Demo attackers wired into the contributor client (the behaviours themselves are in fedchain.sim.attacks).

Each attacker is a normal contributor whose data or update is rewritten; the copycat trains nothing and
resubmits another contributor's update as its own as soon as that update's digest appears on chain.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import torch

from fedchain.chain.errors import TransactionRevertedError
from fedchain.core.cid import cid_to_digest, digest_to_cid
from fedchain.core.envelope import UpdateEnvelope, decode_update, encode_update
from fedchain.learning.trainers import LocalData
from fedchain.roles.contributor import Contributor, RoundOutcome
from fedchain.sim import attacks

log = logging.getLogger(__name__)

class CopycatContributor(Contributor):
    """Copies the first other update of each round: sealed bytes as they are, unsealed ones slightly perturbed."""

    def contribute_round(self, round_index: int, data: LocalData) -> RoundOutcome | None:
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
            tensors = {k: attacks.perturb_copy(torch.from_numpy(v.copy()), 0.01, seed=round_index)
                       for k, v in stolen.tensors.items()}
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
    """Turn an honest contributor into the named attacker (fedchain.sim.attacks.ATTACKS)."""
    attack = attacks.get_attack(name)
    if attack.stage == "copy":
        return CopycatContributor(contributor.protocol, contributor.ipfs, contributor.account, contributor.config)
    config = replace(contributor.config, trainer=attack.wrap(contributor.trainer))
    return Contributor(contributor.protocol, contributor.ipfs, contributor.account, config)
