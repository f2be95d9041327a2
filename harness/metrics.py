"""Reading the service's GET /metrics page (Prometheus' text format) in tests and benchmarks."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

MetricValues = dict[tuple[str, tuple], float]


def metric_values(text: str) -> MetricValues:
    """{(sample name, sorted labels): value} of a Prometheus text page (parsing it: it must be valid)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(values: MetricValues, name: str, **labels: str) -> float:
    """One sample's value; 0 when the page does not have it."""
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(values: MetricValues, name: str, label: str) -> dict[str, float]:
    """{label's value: value} of a sample with that label (`avatar_session_frames_total` by "session", ...)."""
    return {dict(labels)[label]: v for (sample, labels), v in values.items()
            if sample == name and label in dict(labels)}


def by_session(values: MetricValues, name: str) -> dict[str, float]:
    """{session id: value} of a per-session sample (`avatar_session_frames_total`, ...)."""
    return by_label(values, name, "session")
