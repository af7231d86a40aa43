"""How ``visiontfx predict`` prints its answers, whichever model answered (server, SavedModel, TFLite)."""

from __future__ import annotations

import json
from typing import Any, Sequence

TopK = Sequence[tuple[str, float]]  # (class name, score), best first


def format_results(results: Sequence[tuple[str, TopK]]) -> str:
    """A readable block per image: best class first, scores as percentages."""
    lines = []
    for name, top_k in results:
        best, score = top_k[0] if top_k else ("?", 0.0)
        lines.append(f"{name}: {best} ({score:.1%})")
        width = max((len(label) for label, _ in top_k), default=0)
        lines.extend(f"    {label:<{width}}  {value:7.2%}" for label, value in top_k)
    return "\n".join(lines)


def print_results(results: Sequence[tuple[str, TopK]], as_json: bool, header: str, **about: Any) -> None:
    """JSON (``about`` + the predictions) or a header line and the readable blocks, on stdout."""
    if as_json:
        predictions = [
            {"image": name, "top_k": [{"class": label, "score": score} for label, score in top_k]}
            for name, top_k in results
        ]
        print(json.dumps({**about, "predictions": predictions}, indent=2))
    else:
        print(header)
        print(format_results(results))
