"""fedchain.unlabelled.record and .checks: the pseudo-label record, its Merkle proofs, the envelope extension, the
packed on-chain summary, and what a validator refuses or flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedchain.core.envelope import BadMetadataError, UpdateEnvelope, decode_update, encode_update
from fedchain.core.report import RoundReport, UpdateRecord, canonical_json
from fedchain.core.spec import UnlabelledConfig, mnist_spec
from fedchain.unlabelled.checks import check_record
from fedchain.unlabelled.record import (
    EXTENSION,
    PseudoLabelRecord,
    PseudoLabels,
    Summary,
    bucket_of,
    commitment,
    pack_summary,
    salt_for,
    sample_digest,
    verify_label,
)

SPEC = mnist_spec().model_copy(update={"unlabelled": UnlabelledConfig()})
SECRET = b"\x07" * 32
CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
ADDRESS = "0x" + "ab" * 20


def _labels(n: int = 7, labels=None, confidences=None, labelled: int = 5) -> tuple[PseudoLabels, np.ndarray]:
    samples = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    return PseudoLabels(
        threshold=0.95, adaptive=False, num_classes=10, labelled=labelled, unlabelled_seen=n + 3,
        sample_digests=tuple(sample_digest(s) for s in samples),
        labels=tuple(labels if labels is not None else [i % 3 for i in range(n)]),
        confidences=tuple(confidences if confidences is not None else [0.95 + 0.007 * i for i in range(n)]),
    ), samples


def test_a_record_counts_what_was_labelled():
    labels, _ = _labels()
    record = PseudoLabelRecord.build(labels, SECRET)
    assert record.pseudo_labelled == 7 and record.num_samples == 12 and record.threshold_bp == 9500
    assert record.histogram == (3, 2, 2, 0, 0, 0, 0, 0, 0, 0)
    assert record.mean_confidence_bp == int(sum(labels.confidences) / 7 * 10_000)
    assert [b for _, _, b in record.leaves] == [bucket_of(c) for c in labels.confidences]
    assert PseudoLabelRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_one_label_is_proven_and_a_tampered_one_is_not():
    labels, samples = _labels()
    record = PseudoLabelRecord.build(labels, SECRET)
    i = 4
    commit, label, bucket = record.leaves[i]
    # the contributor discloses sample i and its salt: the auditor recomputes the commitment
    digest = sample_digest(samples[i])
    assert commitment(salt_for(SECRET, digest), digest) == commit
    proof = record.proof(i)
    assert verify_label(record.root, commit, label, bucket, proof)
    assert not verify_label(record.root, commit, (label + 1) % 10, bucket, proof)  # another label
    assert not verify_label(record.root, commit, label, bucket - 1, proof)  # another confidence bucket
    other = sample_digest(samples[(i + 1) % 7])
    assert not verify_label(record.root, commitment(salt_for(SECRET, other), other), label, bucket, proof)
    assert not verify_label(record.root, commit, label, bucket, proof[:-1])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("histogram", [4, 1, 2, 0, 0, 0, 0, 0, 0, 0], "does not count the leaves"),
    ("root", "0x" + "00" * 32, "is not the Merkle root"),
    ("pseudo_labelled", 6, "there are 7 leaves"),
    ("unlabelled_seen", 6, "exceeds unlabelled_seen"),
    ("mean_confidence_bp", 5000, "outside"),
    ("threshold_bp", 10_001, "at most 10000"),
    ("labelled", -1, "integer in"),
    ("adaptive", 1, "true or false"),
])
def test_an_inconsistent_record_is_refused(field, value, message):
    raw = PseudoLabelRecord.build(_labels()[0], SECRET).to_json()
    raw[field] = value
    with pytest.raises(ValueError, match=message):
        PseudoLabelRecord.from_json(raw)


def test_the_record_travels_in_the_envelope_and_is_checked_there():
    record = PseudoLabelRecord.build(_labels()[0], SECRET)
    tensors = {"w": np.ones((2, 3), np.float32)}
    env = UpdateEnvelope(1, 0, CID, record.num_samples, ADDRESS, tensors, {EXTENSION: record.to_json()})
    decoded = decode_update(encode_update(env), {"w": ((2, 3), "float32")})
    assert PseudoLabelRecord.from_json(decoded.extensions[EXTENSION]) == record
    tampered = record.to_json()
    tampered["leaves"][0][1] = (tampered["leaves"][0][1] + 1) % 10
    with pytest.raises(BadMetadataError, match="pseudo-labels/1"):
        UpdateEnvelope(1, 0, CID, record.num_samples, ADDRESS, tensors, {EXTENSION: tampered})


def test_the_summary_packs_into_one_word_and_back():
    record = PseudoLabelRecord.build(_labels()[0], SECRET)
    packed = record.summary()
    assert packed < 2**128
    assert Summary.from_event(packed, record.root, record.histogram_bytes()) == Summary.of(record)
    assert pack_summary(10_000, 2**32 - 1, 2**32 - 1, 10_000, 2**32 - 1) >> 128 == 0
    with pytest.raises(ValueError, match="does not fit"):
        pack_summary(9500, 2**32, 0, 0, 0)


def test_the_validator_refuses_records_not_bound_to_the_update():
    record = PseudoLabelRecord.build(_labels()[0], SECRET)
    ext = {EXTENSION: record.to_json()}
    ok, summary = check_record(SPEC, ext, Summary.of(record), record.num_samples)
    assert ok is None and summary is not None and summary["pseudo_labelled"] == 7 and summary["flags"] == []
    assert check_record(SPEC, {}, None, 10) == (None, None)  # a labelled-only submission
    assert "no record" in check_record(SPEC, {}, Summary.of(record), 12)[0]
    assert "without its declaration" in check_record(SPEC, ext, None, 12)[0]
    other = Summary.of(PseudoLabelRecord.build(_labels(labelled=4)[0], SECRET))
    assert "differs from the record" in check_record(SPEC, ext, other, 12)[0]
    assert "differs from the update's 13 samples" in check_record(SPEC, ext, Summary.of(record), 13)[0]
    assert "without an unlabelled section" in check_record(mnist_spec(), ext, Summary.of(record), 12)[0]


def test_implausible_records_are_flagged():
    one_class = PseudoLabelRecord.build(_labels(n=25, labels=[4] * 25, confidences=[0.99] * 25)[0], SECRET)
    low = PseudoLabelRecord.build(_labels(confidences=[0.5] * 7)[0], SECRET)
    alone = PseudoLabelRecord.build(_labels(labelled=0)[0], SECRET)
    for record, flag in ((one_class, "one-class"), (low, "below-threshold"), (alone, "no-labels")):
        _, summary = check_record(SPEC, {EXTENSION: record.to_json()}, Summary.of(record), record.num_samples)
        assert summary is not None and flag in summary["flags"]


def test_reports_without_pseudo_labels_keep_their_bytes():
    update = dict(contributor=ADDRESS, cid=CID, num_samples=3, status="accepted")
    report = dict(task_id=1, round=0, base_model_cid=CID, model_cid=CID, budget=0, total_rewards=0,
                  rewards_root="0x" + "00" * 32)
    plain = canonical_json(RoundReport(**report, updates=[UpdateRecord(**update)]))
    assert b"pseudo_labels" not in plain
    summary = {"pseudo_labelled": 2, "flags": ["one-class"]}
    with_labels = RoundReport(**report, updates=[UpdateRecord(**update, pseudo_labels=summary)])
    assert RoundReport.from_json_bytes(canonical_json(with_labels)).updates[0].pseudo_labels == summary
