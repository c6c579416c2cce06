"""Prometheus text exposition (format 0.0.4) for the server's counters, written by hand: a few dozen lines
instead of a dependency. Requests and errors by route and status, request latency and batch size histograms."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms are exposed."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{_num(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{braces} {self.sum!r}", f"{name}_count{braces} {self.count}"]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Thread-safe counters the app updates and ``GET /metrics`` renders."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.in_flight = 0

    def record(self, route: str, status: int, seconds: float, error: str | None = None) -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            if error is not None:
                self.errors[(route, error)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def enter(self, delta: int = 1) -> None:
        """A request started (``delta=1``) or ended (``delta=-1``)."""
        with self.lock:
            self.in_flight += delta

    def batch(self, size: int) -> None:
        with self.lock:
            self.batch_size.observe(size)

    def render(self) -> str:
        with self.lock:
            lines = [
                "# HELP vitkit_requests_total HTTP requests served, by route and status code.",
                "# TYPE vitkit_requests_total counter",
                *(
                    f'vitkit_requests_total{{route="{r}",code="{c}"}} {n}'
                    for (r, c), n in sorted(self.requests.items())
                ),
                "# HELP vitkit_request_errors_total Requests answered with an error, by route and error code.",
                "# TYPE vitkit_request_errors_total counter",
                *(
                    f'vitkit_request_errors_total{{route="{r}",error="{e}"}} {n}'
                    for (r, e), n in sorted(self.errors.items())
                ),
                "# HELP vitkit_request_duration_seconds Time from request to response, by route.",
                "# TYPE vitkit_request_duration_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("vitkit_request_duration_seconds", f'route="{route}"')
            lines += [
                "# HELP vitkit_batch_size Images per model forward pass (dynamic batching).",
                "# TYPE vitkit_batch_size histogram",
                *self.batch_size.lines("vitkit_batch_size", ""),
                "# HELP vitkit_requests_in_flight Requests being handled now.",
                "# TYPE vitkit_requests_in_flight gauge",
                f"vitkit_requests_in_flight {self.in_flight}",
            ]
        return "\n".join(lines) + "\n"
