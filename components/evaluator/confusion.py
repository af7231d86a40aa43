"""Numbers derived from a confusion matrix (rows: true class, columns: predicted); no TensorFlow.

Shared by the report and the model card so both state the same per-class scores.
"""

from __future__ import annotations

from typing import Sequence


def per_class_metrics(matrix: Sequence[Sequence[int]]) -> list[dict[str, float]]:
    """support, correct, precision, recall and F1 per class from a confusion matrix (rows: truth)."""
    size = len(matrix)
    metrics = []
    for c in range(size):
        support = sum(matrix[c])
        predicted = sum(matrix[r][c] for r in range(size))
        correct = matrix[c][c]
        precision = correct / predicted if predicted else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.append(
            {"support": support, "correct": correct, "precision": precision, "recall": recall, "f1": f1}
        )
    return metrics


def confused_pairs(matrix: Sequence[Sequence[int]], limit: int) -> list[tuple[int, int, int]]:
    """(true, predicted, count) of the largest off-diagonal cells, largest first."""
    pairs = [(r, c, n) for r, row in enumerate(matrix) for c, n in enumerate(row) if r != c and n]
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))[:limit]
