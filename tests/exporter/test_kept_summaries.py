"""The counts a kept summary adds up (``exporter.kept_summaries``), apart from any store."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from exporter import rollups
from exporter.kept_summaries import LABEL_FACETS, METRICS, Counts


def _counts(rng: random.Random, calls: int, values: range) -> Counts:
    """``calls`` calls with random models, statuses, labels and timings drawn from ``values``."""
    counts = Counts()
    for _ in range(calls):
        counts.by_model_status[(rng.choice(["gpt-4o", None]), rng.choice(["succeeded", "failed"]))] += 1
        for name in LABEL_FACETS:
            counts.values[name][rng.choice(["a", "b", None])] += 1
        for name in METRICS:
            if rng.random() < 0.8:  # a call without the timing is not counted in its histogram
                counts.histograms[name][rng.choice(values)] += 1
    return counts


@pytest.mark.parametrize("seed", range(40))
def test_percentiles_of_two_sets_of_calls_are_those_of_their_sum(seed: int) -> None:
    rng = random.Random(seed)
    many = _counts(rng, rng.randrange(0, 300), range(0, rng.choice([5, 50, 5000])))
    few = _counts(rng, rng.randrange(0, 8), range(rng.choice([0, 40, 6000]), 7000))
    histograms = {name: Counter(counter) for name, counter in many.histograms.items()}

    together = many + few

    assert (
        many.percentiles(few)
        == together.percentiles()
        == {name: rollups.ranked(many.histograms[name] + few.histograms[name]) for name in METRICS}
    )
    assert together.total == many.total + few.total
    assert (together - few).by_model_status == many.by_model_status
    assert (together - few).histograms == many.histograms
    assert (together - few).values == many.values
    assert many.histograms == histograms  # the sum left its parts as they were
