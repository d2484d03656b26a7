"""Differentially private training (DP-SGD through Opacus) and each contributor's privacy accounting.

`accounting` (the spec's accountant over a history of DP-SGD steps, fixed-point epsilons for the chain),
`declaration` (the "privacy/1" update extension: what a contributor declares, and the validator's check of it),
`budget` (a contributor's spend for one task, kept across restarts), `layers` (models Opacus can train),
`trainer` (`DPTrainer`, the `Trainer` for a spec with a privacy section).
"""
