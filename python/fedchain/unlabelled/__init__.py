"""Learning from unlabelled data: the partly-labelled data format, FixMatch-style pseudo-labelling against the global
model, and the pseudo-label record each update carries (its summary on chain, its Merkle root over every label).

Modules: `data` (the .npz convention), `augment` (weak and strong image views), `trainer` (`PseudoLabelTrainer`),
`record` (the record, its Merkle tree and proofs, the envelope extension "pseudo-labels/1", the packed on-chain
summary; no torch), `checks` (what a validator checks about a record).
"""
