"""Mark a cosmic-ray session's mutants inside type annotations as skipped (used by scripts/mutation.sh).

Our modules start with `from __future__ import annotations`, so Python never evaluates an annotation: `list[int] |
None` mutated to `list[int] + None` cannot change a result, and no test could kill it. Only modules with that import
are filtered; elsewhere an annotation is evaluated and its mutants stay.
"""

import ast
import sys
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) as (line, column) of every annotation, or none when annotations are evaluated."""
    tree = ast.parse(source)
    lazy = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    if not lazy:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            found.append(node.returns)
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in found]


def main(session: str) -> None:
    with use_db(session, WorkDB.Mode.open) as db:
        spans = {}
        for item in db.pending_work_items:
            for mutation in item.mutations:
                path = mutation.module_path
                if path not in spans:
                    spans[path] = annotation_spans(Path(path).read_text(encoding="utf-8"))
                inside = any(start <= mutation.start_pos and mutation.end_pos <= end for start, end in spans[path])
                if inside:
                    skipped = WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="inside an annotation")
                    db.set_result(item.job_id, skipped)


if __name__ == "__main__":
    main(sys.argv[1])
