"""Process-wide metrics in Prometheus text exposition format (version 0.0.4).

Every stage counts what it does (files, plates, specimens, signed, quarantined),
sets queue depths and observes latencies here; ``GET /v1/metrics`` serves
:func:`render`. Instruments are created by name and the call is idempotent, so a
module can write ``SIGNED = counter("ketqua_signed_total", "...")`` at import
time and a worker re-importing it gets the same instrument. All updates take a
short lock: stages run in several threads of one process (worker *processes*
keep their own copy, so count in the parent when the batch returns).

Labels are optional: ``counter("ketqua_http_requests_total", "...", labels=("route", "code"))
.labels(route="/v1/results", code="200").inc()``.
"""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "DEFAULT_BUCKETS",
    "counter",
    "gauge",
    "histogram",
    "render",
    "CONTENT_TYPE",
]

#: The Content-Type Prometheus expects for the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets in seconds: sub-millisecond API reads up to multi-second plate signing.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _fmt(value: float) -> str:
    """A sample value as Prometheus writes it (integers without '.0', +Inf/-Inf/NaN spelled out)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    """Shared machinery: a name, help text, label names and one child per label-value tuple."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise ValueError(f"label name {label!r} of metric {name!r} is not allowed")
        self.name = name
        self.help = help
        self.labelnames = tuple(labels)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], _Metric] = {}

    def labels(self, *values: str, **by_name: str) -> "_Metric":
        """The child instrument for one combination of label values (created on first use)."""
        if by_name:
            if values:
                raise ValueError("give label values either by position or by name, not both")
            try:
                values = tuple(str(by_name[n]) for n in self.labelnames)
            except KeyError as exc:
                raise ValueError(f"metric {self.name} needs labels {self.labelnames}, missing {exc}") from None
            if len(by_name) != len(self.labelnames):
                raise ValueError(f"metric {self.name} takes labels {self.labelnames}, got {sorted(by_name)}")
        if len(values) != len(self.labelnames):
            raise ValueError(f"metric {self.name} takes {len(self.labelnames)} label values, got {len(values)}")
        key = tuple(str(v) for v in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._new_child()
                self._children[key] = child
            return child

    def _new_child(self) -> "_Metric":
        raise NotImplementedError

    def _check_unlabelled(self) -> None:
        if self.labelnames:
            raise ValueError(f"metric {self.name} has labels {self.labelnames}: call .labels(...) first")

    def _samples(self, labelvalues: Sequence[str]) -> Iterable[str]:
        raise NotImplementedError

    def _render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        if self.labelnames:
            with self._lock:
                children = sorted(self._children.items())
            for values, child in children:
                lines.extend(child._samples_for(self, values))
        else:
            lines.extend(self._samples_for(self, ()))
        return lines

    def _samples_for(self, parent: "_Metric", values: Sequence[str]) -> Iterable[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count (files received, results signed)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._value = 0.0

    def _new_child(self) -> "Counter":
        return Counter(self.name, self.help)

    def inc(self, n: float = 1) -> None:
        """Add ``n`` (≥ 0: a counter that goes down is a gauge)."""
        self._check_unlabelled()
        if n < 0:
            raise ValueError(f"counter {self.name} cannot decrease (inc({n})); use a gauge")
        with self._lock:
            self._value += n

    @property
    def value(self) -> float:
        return self._value

    def _samples_for(self, parent: _Metric, values: Sequence[str]) -> Iterable[str]:
        yield f"{parent.name}{_label_text(parent.labelnames, values)} {_fmt(self._value)}"


class Gauge(_Metric):
    """A value that goes up and down (queue depth, ledger sequence, open connections)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._value = 0.0

    def _new_child(self) -> "Gauge":
        return Gauge(self.name, self.help)

    def set(self, value: float) -> None:
        self._check_unlabelled()
        with self._lock:
            self._value = float(value)

    def inc(self, n: float = 1) -> None:
        self._check_unlabelled()
        with self._lock:
            self._value += n

    def dec(self, n: float = 1) -> None:
        self._check_unlabelled()
        with self._lock:
            self._value -= n

    @property
    def value(self) -> float:
        return self._value

    def _samples_for(self, parent: _Metric, values: Sequence[str]) -> Iterable[str]:
        yield f"{parent.name}{_label_text(parent.labelnames, values)} {_fmt(self._value)}"


class Histogram(_Metric):
    """Observations (seconds) in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help, labels)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name} needs distinct, finite bucket bounds, got {list(buckets)}")
        self.buckets = tuple(bounds)
        # One slot per finite bound plus the +Inf overflow; stored non-cumulative, summed on render.
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def _new_child(self) -> "Histogram":
        return Histogram(self.name, self.help, buckets=self.buckets)

    def observe(self, seconds: float) -> None:
        """Record one observation (a duration in seconds, or any non-negative amount)."""
        self._check_unlabelled()
        i = bisect_left(self.buckets, seconds)  # le: a value equal to a bound falls in that bucket
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    @property
    def count(self) -> int:
        return sum(self._counts)

    @property
    def sum(self) -> float:
        return self._sum

    def _samples_for(self, parent: _Metric, values: Sequence[str]) -> Iterable[str]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        running = 0
        names = parent.labelnames
        for bound, n in zip(self.buckets, counts):
            running += n
            le = 'le="' + _fmt(bound) + '"'
            yield f"{parent.name}_bucket{_label_text(names, values, le)} {running}"
        running += counts[-1]
        inf = 'le="+Inf"'
        yield f"{parent.name}_bucket{_label_text(names, values, inf)} {running}"
        yield f"{parent.name}_sum{_label_text(names, values)} {_fmt(total)}"
        yield f"{parent.name}_count{_label_text(names, values)} {running}"


_registry: dict[str, _Metric] = {}
_registry_lock = threading.Lock()


def _get_or_create(cls: type[_Metric], name: str, help: str, labels: Sequence[str], **kw: object) -> _Metric:
    with _registry_lock:
        existing = _registry.get(name)
        if existing is not None:
            if type(existing) is not cls or existing.labelnames != tuple(labels):
                raise ValueError(
                    f"metric {name} already exists as a {existing.kind} with labels {existing.labelnames}; "
                    f"cannot register it again as a {cls.kind} with labels {tuple(labels)}"
                )
            return existing
        metric = cls(name, help, labels, **kw)  # type: ignore[arg-type]
        _registry[name] = metric
        return metric


def counter(name: str, help: str, labels: Sequence[str] = ()) -> Counter:
    """The process-wide counter called ``name`` (created on first call, the same object afterwards)."""
    return _get_or_create(Counter, name, help, labels)  # type: ignore[return-value]


def gauge(name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
    """The process-wide gauge called ``name``."""
    return _get_or_create(Gauge, name, help, labels)  # type: ignore[return-value]


def histogram(
    name: str, help: str, buckets: Sequence[float] = DEFAULT_BUCKETS, labels: Sequence[str] = ()
) -> Histogram:
    """The process-wide histogram called ``name``; ``buckets`` are upper bounds (seconds), +Inf is implied."""
    return _get_or_create(Histogram, name, help, labels, buckets=buckets)  # type: ignore[return-value]


def render() -> str:
    """Every registered instrument in Prometheus text exposition format, sorted by name."""
    with _registry_lock:
        metrics = sorted(_registry.values(), key=lambda m: m.name)
    lines: list[str] = []
    for metric in metrics:
        lines.extend(metric._render())
    return "\n".join(lines) + "\n" if lines else ""
