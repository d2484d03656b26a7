"""TaskManager.submitUpdateWithPseudoLabels: the submission with its pseudo-label declaration (issue 13)."""

from __future__ import annotations

import ape

from conftest import digest, events

ROOT = b"\x11" * 32
HISTOGRAM = b"".join(n.to_bytes(4, "big") for n in (3, 0, 5, 0, 0, 0, 0, 2, 0, 0))  # 10 classes


def pack(threshold_bp=9500, unlabelled_seen=40, pseudo_labelled=10, mean_confidence_bp=9800, labelled=5):
    return threshold_bp | unlabelled_seen << 16 | pseudo_labelled << 48 | mean_confidence_bp << 80 | labelled << 96


def test_submit_with_pseudo_labels_emits_both_events(manager, task, alice):
    summary = pack()
    tx = manager.submitUpdateWithPseudoLabels(task, 0, digest(7), 15, ROOT, summary, HISTOGRAM, sender=alice)
    [sub] = events(tx, manager.UpdateSubmitted)
    assert (sub.contributor, sub.digest, sub.numSamples) == (alice.address, digest(7), 15)
    [log] = events(tx, manager.PseudoLabelsDeclared)
    assert (log.taskId, log.round, log.contributor) == (task, 0, alice.address)
    assert (log.labelsRoot, log.summary, bytes(log.histogram)) == (ROOT, summary, HISTOGRAM)
    assert manager.submissionOf(task, 0, alice) == digest(7)


def test_summary_must_match_the_sample_count(manager, task, alice):
    bad = pack(labelled=6)  # 6 + 10 != 15
    with ape.reverts(manager.TaskManagerBadPseudoLabelSummary, summary=bad, numSamples=15):
        manager.submitUpdateWithPseudoLabels(task, 0, digest(7), 15, ROOT, bad, HISTOGRAM, sender=alice)


def test_summary_fields_out_of_range_revert(manager, task, alice):
    for bad in (pack(pseudo_labelled=41, labelled=0), pack(threshold_bp=10_001), pack(mean_confidence_bp=10_001),
                pack() | 1 << 200):
        n = ((bad >> 96) & 0xFFFFFFFF) + ((bad >> 48) & 0xFFFFFFFF)
        with ape.reverts(manager.TaskManagerBadPseudoLabelSummary):
            manager.submitUpdateWithPseudoLabels(task, 0, digest(7), n, ROOT, bad, HISTOGRAM, sender=alice)


def test_histogram_length_is_checked(manager, task, alice):
    for bad in (b"\x00" * 4, b"\x00" * 9, b"\x00" * 1028):
        with ape.reverts(manager.TaskManagerBadPseudoLabelHistogram, length=len(bad)):
            manager.submitUpdateWithPseudoLabels(task, 0, digest(7), 15, ROOT, pack(), bad, sender=alice)


def test_the_submission_rules_still_apply(manager, task, alice, outsider):
    manager.submitUpdateWithPseudoLabels(task, 0, digest(7), 15, ROOT, pack(), HISTOGRAM, sender=alice)
    with ape.reverts(manager.TaskManagerAlreadySubmitted):
        manager.submitUpdateWithPseudoLabels(task, 0, digest(8), 15, ROOT, pack(), HISTOGRAM, sender=alice)
    with ape.reverts(manager.TaskManagerStakeTooLow):
        manager.submitUpdateWithPseudoLabels(task, 0, digest(9), 15, ROOT, pack(), HISTOGRAM, sender=outsider)


def test_a_pause_does_not_stop_it(manager, task, alice, admin):
    """As submitUpdate: a pause stops new tasks only, so that it cannot run rounds out empty."""
    manager.pause(sender=admin)
    manager.submitUpdateWithPseudoLabels(task, 0, digest(7), 15, ROOT, pack(), HISTOGRAM, sender=alice)
    assert manager.submissionOf(task, 0, alice) == digest(7)


def test_extra_gas_over_a_plain_submission_is_small(manager, task, alice, bob):
    """The declaration costs well under 10k gas over submitUpdate (same state changes: first submission of the
    round by a staked account; alice and bob hold the same kind of stake)."""
    plain = manager.submitUpdate(task, 0, digest(1), 15, sender=bob).gas_used
    with_labels = manager.submitUpdateWithPseudoLabels(task, 0, digest(2), 15, ROOT, pack(), HISTOGRAM,
                                                       sender=alice).gas_used
    print(f"submitUpdate {plain} gas, submitUpdateWithPseudoLabels (10 classes) {with_labels} gas, "
          f"+{with_labels - plain}")
    assert with_labels - plain < 10_000
