"""The few Prometheus series TF Serving exports that matter here."""

from __future__ import annotations

import threading


class Metrics:
    """The few Prometheus series TF Serving exports that matter here: request counts and latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str, str], list[float]] = {}

    def record(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        with self._lock:
            key = (model, api, entrypoint)
            self._counts[(model, status, entrypoint)] = self._counts.get((model, status, entrypoint), 0) + 1
            total = self._latency.setdefault(key, [0.0, 0])
            total[0] += seconds * 1e6
            total[1] += 1

    def render(self) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, status, entry), count in sorted(self._counts.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",status="{status}",'
                    f'entrypoint="{entry}"}} {count}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency summary")
            for (model, api, entry), (micros, count) in sorted(self._latency.items()):
                labels = f'model_name="{model}",API="{api}",entrypoint="{entry}"'
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {micros:.0f}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {count}")
        return "\n".join(lines) + "\n"
