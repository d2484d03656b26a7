"""Robust aggregation of model-update deltas: pure, reproducible to the byte, fast.

Rows of a preallocated (K, D) float32 buffer hold the updates, in `canonical_order` of contributor addresses;
`aggregate(RuleConfig(...), buffer, weights)` applies the task's rule. See `rules` for the reproducibility
contract and each rule's definition.
"""

from fedchain.aggregation._chunks import reproducible_gram, reproducible_sq_norms
from fedchain.aggregation.config import RULES, AggregationError, AggregationResult, RuleConfig, canonical_order
from fedchain.aggregation.rules import (
    MAX_WEIGHT,
    aggregate,
    check_weights,
    clip_to_median_norm,
    coordinate_median,
    fedavg,
    krum_scores,
    median_of,
    multi_krum,
    row_norms,
    sq_distances,
    trimmed_cut,
    trimmed_mean,
)

__all__ = [
    "MAX_WEIGHT",
    "RULES",
    "AggregationError",
    "AggregationResult",
    "RuleConfig",
    "aggregate",
    "canonical_order",
    "check_weights",
    "clip_to_median_norm",
    "coordinate_median",
    "fedavg",
    "krum_scores",
    "median_of",
    "multi_krum",
    "reproducible_gram",
    "reproducible_sq_norms",
    "row_norms",
    "sq_distances",
    "trimmed_cut",
    "trimmed_mean",
]
