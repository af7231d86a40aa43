"""The report's drift part: this run's training data against the data the last model trained on."""

from __future__ import annotations

from visiontfx.tools.report import plots
from visiontfx.tools.report.facts import ReportData
from visiontfx.tools.report.page import Figures, note, paragraph, table


def drift_part(data: ReportData, figures: Figures) -> list[object]:
    drift = data.drift
    if drift is None:
        return [paragraph("No drift check in this run (drift.action=off, or a cluster runner).")]
    if not drift["compared"]:
        return [
            note("No baseline yet: nothing was trained before this data, so there is nothing to compare.")
        ]
    parts: list[object] = []
    if drift["exceeded"]:
        parts.append(note(f"{len(drift['exceeded'])} measure(s) beyond their drift threshold.", "warn"))
    else:
        parts.append(note("Every drift measure is within its threshold.", "ok"))
    if drift.get("current") and drift.get("baseline"):
        parts.append(
            figures.add(
                "label-drift",
                plots.label_distributions(drift["current"], drift["baseline"]),
                "Share of each class in the training split, from StatisticsGen's statistics.",
                "grouped bar chart of class shares, this run next to the previously trained data",
            )
        )
    rows = [
        [
            m["feature"],
            m["measure"],
            f"{m['value']:.3f}",
            f"{m['threshold']:.3f}",
            "yes" if m["exceeded"] else "",
        ]
        for m in drift["measurements"]
    ]
    parts.append(
        table(
            ["feature", "measure", "value", "threshold", "beyond"],
            rows,
            id_="drift-measures",
            numeric_columns=[2, 3],
        )
    )
    return parts
