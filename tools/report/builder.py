"""``build_report``: one self-contained HTML page (plus its PNGs) for one pipeline run.

The page is written next to the run's artifacts by default,
``<pipeline_root>/reports/<run id>/report.html``, and can be rebuilt for any
past run from ML Metadata. Importing this module is cheap; TensorFlow loads
when a report is built.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from visiontfx.tools.report.facts import LR_FINDER_DIR, LR_FINDER_FILE, ReportData
from visiontfx.tools.report.page import Figure, Figures, render_page
from visiontfx.tools.report.sections import all_sections, header

REPORT_FILE = "report.html"
REPORTS_DIR = "reports"
# Progress steps: collect.collect announces the first five, build_report the last two.
STEPS = (
    "reading ML Metadata",
    "reading examples",
    "predicting",
    "Grad-CAM",
    "augmentation preview",
    "drawing",
    "writing",
)
_FIGURE_FILE = re.compile(r"^\d{2}-[a-z0-9-]+\.png$")


def render_report(data: ReportData) -> tuple[str, list[Figure]]:
    """The HTML document and its figures (pure: no file is read or written)."""
    figures = Figures()
    sections = all_sections(data, figures)
    document = render_page(f"{data.pipeline_name} · run {data.run_id}", header(data), sections)
    return document, figures.items


def pipeline_root_of(run: Any) -> str:
    """The pipeline root, from an output URI laid out as ``<root>/<node id>/<output key>/<id>``."""
    for node, component in run.components.items():
        for key, artifacts in component.outputs.items():
            for artifact in artifacts:
                parts = Path(artifact.uri).parts
                if len(parts) > 3 and parts[-3] == node and parts[-2] == key:
                    return str(Path(*parts[:-3]))
    raise LookupError(
        f"Cannot tell the pipeline root of run {run.run_id} from its artifacts; pass output_dir."
    )


def safe_name(run_id: str) -> str:
    """A run id as a directory name (run ids are timestamps with ':' in them)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-") or "run"


def default_output_dir(run: Any, pipeline_root: str | None = None) -> Path:
    return Path(pipeline_root or pipeline_root_of(run)) / REPORTS_DIR / safe_name(run.run_id)


def default_lr_finder_file(
    metadata_path: str, pipeline_name: str, run_id: str, pipeline_root: str | None
) -> str:
    """Where ``visiontfx lr-find`` writes for a local run: <pipeline.root>/lr_finder/, and the
    pipeline root is <pipeline.root>/pipelines/<name>. "" when the root cannot be told."""
    from visiontfx.pipeline import metadata

    try:
        root = pipeline_root or pipeline_root_of(metadata.load_run(metadata_path, pipeline_name, run_id))
    except LookupError:
        return ""
    return str(Path(root).parent.parent / LR_FINDER_DIR / LR_FINDER_FILE)


class _Progress:
    """``[report i/N] step …`` lines on stderr, like ``visiontfx run``'s component lines.

    Lines rather than a redrawn bar: the report usually follows a run whose
    output goes to a log file. Silent with --quiet/--json (VISIONTFX_QUIET).
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.done = 0
        self.started = time.monotonic()

    def __call__(self, step: str) -> None:
        self.done += 1
        if not self.quiet:
            print(f"[report {self.done}/{len(STEPS)}] {step} …", file=sys.stderr, flush=True)

    def finish(self, page: Path) -> None:
        if not self.quiet:
            seconds = time.monotonic() - self.started
            print(f"[report] written in {seconds:.1f} s: {page}", file=sys.stderr, flush=True)


def build_report(
    metadata_path: str,
    pipeline_name: str,
    run_id: str = "latest",
    output_dir: str | os.PathLike[str] | None = None,
    *,
    pipeline_root: str | None = None,
    lr_finder_file: str | None = None,
    quiet: bool | None = None,
) -> Path:
    """Writes ``report.html`` and its PNGs for a run; returns the page's path.

    ``output_dir`` defaults to ``<pipeline_root>/reports/<run id>/``, with the
    pipeline root taken from the run's artifact URIs unless given.
    ``lr_finder_file`` defaults to where ``visiontfx lr-find`` writes for a
    local run (``<pipeline.root>/lr_finder/``, two levels above the pipeline root).
    """
    from visiontfx.tools.report.collect import collect

    progress = _Progress(bool(os.environ.get("VISIONTFX_QUIET")) if quiet is None else quiet)
    if lr_finder_file is None:
        lr_finder_file = default_lr_finder_file(metadata_path, pipeline_name, run_id, pipeline_root)
    data, run = collect(metadata_path, pipeline_name, run_id, step=progress, lr_finder_files=[lr_finder_file])
    progress("drawing")
    document, figures = render_report(data)
    progress("writing")
    target = Path(output_dir) if output_dir else default_output_dir(run, pipeline_root)
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.iterdir():  # a rebuilt report may have fewer figures
        if _FIGURE_FILE.match(stale.name):
            stale.unlink()
    for figure in figures:
        (target / figure.file_name).write_bytes(figure.png)
    page = target / REPORT_FILE
    page.write_text(document, encoding="utf-8")
    progress.finish(page)
    return page
