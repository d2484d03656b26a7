"""What a validator checks about an update's pseudo-label record, and what it flags in the round report.

    problem, summary = check_record(spec, envelope.extensions, declaration, num_samples)

Refused (the update is rejected as bad-metadata: its record is not bound to it, or contradicts itself or the chain):
a record on a task without an `unlabelled` section; a record without the on-chain declaration or the reverse; a
declaration (PseudoLabelsDeclared) that differs from the record in the envelope (root, counts, histogram); a sample
count other than labelled + pseudo-labelled; a histogram not of the task's num_classes.

Flagged, not refused (visible in the report as `flags`; the record is declared by the contributor, not proven):
    one-class        every pseudo-label in one class (at least MIN_FOR_ONE_CLASS of them)
    below-threshold  a confidence bucket under the declared fixed threshold
    no-labels        trained on pseudo-labels alone
"""

from __future__ import annotations

from typing import Any

from fedchain.core.spec import TaskSpec
from fedchain.unlabelled.record import BASIS_POINTS, BUCKETS, EXTENSION, PseudoLabelRecord, Summary

MIN_FOR_ONE_CLASS = 20


def check_record(spec: TaskSpec, extensions: dict[str, Any], declared: Summary | None, num_samples: int
                 ) -> tuple[str | None, dict[str, Any] | None]:
    """(what is wrong or None, the report's summary of the record or None when there is none)."""
    raw = extensions.get(EXTENSION)
    if raw is None:
        if declared is not None:
            return "the chain holds a pseudo-label declaration but the update carries no record", None
        return None, None
    if spec.unlabelled is None:
        return "a pseudo-label record on a task without an unlabelled section", None
    record = PseudoLabelRecord.from_json(raw)  # the envelope checked it when decoding; this cannot fail
    summary = Summary.of(record)
    if declared is None:
        return "the update carries a pseudo-label record but was submitted without its declaration", None
    if declared != summary:
        return "the pseudo-label declaration on chain differs from the record in the update", None
    if len(record.histogram) != spec.num_classes:
        return f"the histogram has {len(record.histogram)} classes, the task {spec.num_classes}", None
    if record.num_samples != num_samples:
        return (f"labelled {record.labelled} + pseudo-labelled {record.pseudo_labelled} differs from the update's "
                f"{num_samples} samples"), None
    return None, {**summary.to_json(), "flags": flags(record)}


def flags(record: PseudoLabelRecord) -> list[str]:
    out = []
    if record.pseudo_labelled >= MIN_FOR_ONE_CLASS and max(record.histogram) == record.pseudo_labelled:
        out.append("one-class")
    floor = record.threshold_bp * BUCKETS // BASIS_POINTS
    if not record.adaptive and any(bucket < floor for _, _, bucket in record.leaves):
        out.append("below-threshold")
    if record.labelled == 0 and record.pseudo_labelled > 0:
        out.append("no-labels")
    return out
