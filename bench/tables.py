"""Regenerates the tables of docs/benchmarks.md from the committed results in docs/bench/*.json.

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
only those sections are rewritten, the prose around them is left alone. A
section whose JSON is missing keeps its old content.

    .venv/bin/python -m bench.tables
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping

from bench.common import RESULTS_DIR, markdown_table

DOC = RESULTS_DIR.parent / "benchmarks.md"


def render(result: Mapping[str, Any], source: str) -> str:
    """The markdown of one benchmark: a provenance line, then its ``table`` rows."""
    load = result.get("load_average", {})
    load_text = f", load average {load['min']}–{load['max']}" if load else ""
    count = result.get("rounds", 0)
    rounds = f", {count} alternating rounds" if count > 1 else ", one round" if count == 1 else ""
    spread = "; median (min–max)" if count > 1 else ""
    quick = " (--quick size: a smoke test, not a measurement)" if result.get("quick") else ""
    provenance = (
        f"_Generated from [{source}]({source}) — measured {result['date'][:10]} on "
        f"{result['machine']['cpus']} CPUs{rounds}{load_text}{spread}{quick}._"
    )
    return f"{provenance}\n\n{markdown_table(result['table'])}"


def section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- bench:{re.escape(name)} -->)\n.*?\n?(<!-- /bench:{re.escape(name)} -->)", re.S)


def rewrite(doc: str, name: str, body: str) -> str:
    """``doc`` with the section of ``name`` replaced by ``body``; fails if the markers are absent."""
    pattern = section_pattern(name)
    if not pattern.search(doc):
        raise ValueError(
            f"docs/benchmarks.md has no <!-- bench:{name} --> ... <!-- /bench:{name} --> section"
        )
    return pattern.sub(lambda match: f"{match.group(1)}\n{body}\n{match.group(2)}", doc, count=1)


def update_doc(doc_path: Path = DOC, results_dir: Path = RESULTS_DIR) -> list[str]:
    """Rewrites every section that has a result file; returns the names rewritten."""
    doc = doc_path.read_text()
    done = []
    for path in sorted(results_dir.glob("*.json")):
        result = json.loads(path.read_text())
        source = path.relative_to(doc_path.parent).as_posix()
        doc = rewrite(doc, path.stem, render(result, source))
        done.append(path.stem)
    doc_path.write_text(doc)
    return done


def main() -> int:
    names = update_doc()
    print(f"[bench] regenerated {DOC.name} tables: {', '.join(names) or 'none (no results yet)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
