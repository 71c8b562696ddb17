"""Tests of engine.metrics: idempotent instruments, thread safety, Prometheus text format."""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import metrics


def _name(prefix: str) -> str:
    """A metric name unique to this test, since the registry is process-wide."""
    return f"test_{prefix}_{uuid.uuid4().hex[:10]}"


def _parse(text: str) -> dict[str, float]:
    """Sample lines of an exposition as {'name{labels}': value}; comment lines checked for shape."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line), line
            continue
        key, _, value = line.rpartition(" ")
        samples[key] = float(value.replace("+Inf", "inf"))
    return samples


def test_counter_is_idempotent_by_name() -> None:
    """Asking twice for the same counter name returns the same object, so module-level instruments share state."""
    name = _name("idem")
    a = metrics.counter(name, "files received")
    b = metrics.counter(name, "files received")
    a.inc()
    b.inc(2)
    assert a is b
    assert _parse(metrics.render())[name] == 3


def test_same_name_with_another_type_is_refused() -> None:
    """A gauge cannot take the name of an existing counter (it would corrupt the exposition)."""
    name = _name("clash")
    metrics.counter(name, "x")
    with pytest.raises(ValueError, match="already exists as a counter"):
        metrics.gauge(name, "x")


def test_counter_refuses_to_decrease() -> None:
    """A negative increment on a counter is an error, not a silent decrease."""
    c = metrics.counter(_name("neg"), "x")
    with pytest.raises(ValueError):
        c.inc(-1)


def test_invalid_metric_name_is_refused() -> None:
    """Names that Prometheus would reject are refused at creation."""
    with pytest.raises(ValueError):
        metrics.counter("bad-name", "x")


def test_gauge_set_inc_dec_render() -> None:
    """A gauge renders its current value after set, inc and dec, with HELP and TYPE lines."""
    name = _name("queue")
    g = metrics.gauge(name, "plates waiting\nfor signing")
    g.set(10)
    g.inc(5)
    g.dec(2.5)
    text = metrics.render()
    assert f"# HELP {name} plates waiting\\nfor signing" in text
    assert f"# TYPE {name} gauge" in text
    assert _parse(text)[name] == 12.5


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    """Histogram buckets count observations ≤ their bound, cumulatively, ending in +Inf, with _sum and _count."""
    name = _name("lat")
    h = metrics.histogram(name, "latency", buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    s = _parse(metrics.render())
    assert s[f'{name}_bucket{{le="0.1"}}'] == 2  # 0.1 itself is "less or equal"
    assert s[f'{name}_bucket{{le="1"}}'] == 3
    assert s[f'{name}_bucket{{le="+Inf"}}'] == 4
    assert s[f"{name}_count"] == 4
    assert s[f"{name}_sum"] == pytest.approx(3.65)


def test_labelled_counter_renders_escaped_label_values() -> None:
    """Label values with quotes, backslashes and newlines are escaped in the exposition."""
    name = _name("lbl")
    c = metrics.counter(name, "requests", labels=("route",))
    c.labels(route='a"b\\c\nd').inc()
    c.labels("plain").inc(4)
    text = metrics.render()
    assert f'{name}{{route="a\\"b\\\\c\\nd"}} 1' in text
    assert f'{name}{{route="plain"}} 4' in text
    with pytest.raises(ValueError):
        c.inc()  # a labelled metric needs its labels


def test_concurrent_increments_are_not_lost() -> None:
    """Eight threads incrementing one counter and one histogram lose no update."""
    c = metrics.counter(_name("thr"), "x")
    h = metrics.histogram(_name("thrh"), "x")

    def work() -> None:
        for _ in range(5000):
            c.inc()
            h.observe(0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.value == 40000
    assert h.count == 40000


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_histogram_invariants(values: list[float]) -> None:
    """For any observations, bucket counts are non-decreasing and the +Inf bucket equals _count."""
    name = _name("prop")
    h = metrics.histogram(name, "x", buckets=(0.01, 1, 10))
    for v in values:
        h.observe(v)
    s = _parse(metrics.render())
    buckets = [s[f'{name}_bucket{{le="{b}"}}'] for b in ("0.01", "1", "10", "+Inf")]
    assert buckets == sorted(buckets)
    assert buckets[-1] == s[f"{name}_count"] == len(values)
    assert buckets[2] == sum(1 for v in values if v <= 10)
