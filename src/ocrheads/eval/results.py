"""An experiment's results as a grid (conditions x dataset, prompt and metric) and as a Markdown table: apart from
the runner, so that the report reads them without the model code."""

from __future__ import annotations


def results_grid(rows: list[dict]) -> tuple[list[str], dict[str, list[str]]]:
    """Column titles (dataset, prompt, metric) and one row of cells per condition: mean [95 % interval] (n)."""
    columns = list(dict.fromkeys((r["dataset"], r["prompt"], r["metric"]) for r in rows))
    cells: dict[str, dict] = {}
    for r in rows:
        value = f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['n']})"
        cells.setdefault(r["condition"], {})[(r["dataset"], r["prompt"], r["metric"])] = value
    titles = [f"{dataset} {prompt} {metric}" for dataset, prompt, metric in columns]
    return titles, {name: [row.get(column, "") for column in columns] for name, row in cells.items()}


def results_markdown(rows: list[dict]) -> str:
    titles, grid = results_grid(rows)
    lines = ["| condition | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in grid.items()]
    return "\n".join(lines) + "\n"
