"""The protocol's result tables: ``results.json`` files of many runs averaged the way the published tables are.

* :func:`load_results` reads the files ``peft-dor train`` writes; :func:`aggregate_results` takes the mean over seeds
  per method and dataset and each method's "Average" row (HM of the mean base and mean new accuracy, never the mean of
  per-dataset HMs; docs/protocol.md); :func:`format_markdown` / :func:`format_csv` / :func:`write_tables` lay them
  out; :func:`format_run_summary` is the one-run table ``peft-dor train`` prints.

They sit with the protocol runner (``peft-dor protocol``), not in :mod:`peft_dor.evaluation`, which scores one model
and reads no files.

Example:
    ```python
    import glob
    from peft_dor.cli.tables import aggregate_results, load_results, write_tables

    table = aggregate_results(load_results(glob.glob("runs/b2n/**/results.json", recursive=True)))
    write_tables(table, "runs/b2n")   # runs/b2n/tables.md, runs/b2n/tables.csv
    ```
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..evaluation import HARMONIC_METRICS, combine_base_new

SIDES = ("base", "new", "hm")
AVERAGE = "Average"


def load_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read ``results.json`` files (as ``peft-dor train`` writes them)."""
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            records.append(json.load(f))
    return records


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def aggregate_results(
    records: Iterable[Mapping[str, Any]], metrics: Sequence[str] = ("accuracy", "ece")
) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean over seeds per (method, dataset), plus each method's ``"Average"`` row over datasets.

    Each record needs ``method``, ``dataset`` and ``base``/``new`` metric dicts (``seed`` is only counted). Per
    dataset, base and new are seed means and ``hm`` combines the two means (harmonic for accuracy, arithmetic for the
    rest). The Average row takes the mean over datasets of base and of new, then combines those means: the
    published averages are HM(mean base, mean new), not the mean of per-dataset HMs.

    Returns:
        ``{method: {dataset: {"base": {...}, "new": {...}, "hm": {...}, "n_seeds": k}}}`` with datasets in first-seen
        order and ``"Average"`` last (only when a method has more than one dataset).
    """
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if "base" not in record or "new" not in record:
            continue
        grouped[str(record["method"])][str(record["dataset"])].append(record)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for method, per_dataset in grouped.items():
        rows: dict[str, dict[str, Any]] = {}
        for dataset, runs in per_dataset.items():
            row: dict[str, Any] = {"n_seeds": len(runs)}
            for side in ("base", "new"):
                row[side] = {m: _mean([r[side][m] for r in runs if m in r[side]]) for m in metrics}
            row["hm"] = combine_base_new(row["base"], row["new"])
            rows[dataset] = row
        if len(rows) > 1:
            average: dict[str, Any] = {"n_seeds": min(r["n_seeds"] for r in rows.values()), "n_datasets": len(rows)}
            for side in ("base", "new"):
                average[side] = {m: _mean([r[side][m] for r in rows.values()]) for m in metrics}
            average["hm"] = combine_base_new(average["base"], average["new"])
            rows[AVERAGE] = average
        table[method] = rows
    return table


_LABELS = {"accuracy": "Acc", "ece": "ECE", "mce": "MCE", "ace": "ACE", "nll": "NLL", "brier": "Brier"}


def _column_names(metrics: Sequence[str]) -> list[str]:
    names = []
    for m in metrics:
        label = _LABELS.get(m, m)
        hm = "HM" if m in HARMONIC_METRICS else "HM†"
        names += [f"Base {label}", f"New {label}", f"{hm} {label}"]
    return names


def _datasets_in_order(table: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for rows in table.values():
        for dataset in rows:
            if dataset != AVERAGE and dataset not in seen:
                seen.append(dataset)
    return ([AVERAGE] if any(AVERAGE in rows for rows in table.values()) else []) + seen


def format_markdown(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
    metrics: Sequence[str] = ("accuracy", "ece"),
    percent: bool = True,
    digits: int = 2,
) -> str:
    """The paper's layout: one table per dataset (Average first), methods as rows, Base / New / HM per metric.

    Values are shown ×100 when ``percent``. ``HM†`` columns are the arithmetic mean (Base + New) / 2, as in the
    published ECE tables; the accuracy ``HM`` is the harmonic mean.
    """
    scale = 100.0 if percent else 1.0
    header = ["Method", *_column_names(metrics)]
    lines: list[str] = []
    for dataset in _datasets_in_order(table):
        lines += [f"### {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, rows in table.items():
            row = rows.get(dataset)
            if row is None:
                continue
            cells = [method]
            for m in metrics:
                cells += [f"{row[side].get(m, math.nan) * scale:.{digits}f}" for side in SIDES]
            seeds = f" ({row['n_seeds']} seeds)" if dataset != AVERAGE else ""
            cells[0] = method + seeds
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if any(m not in HARMONIC_METRICS for m in metrics):
        lines.append("† arithmetic mean (Base + New) / 2, as in the published calibration tables.")
    return "\n".join(lines).rstrip() + "\n"


def format_csv(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str] = ("accuracy", "ece")
) -> str:
    """Long format: ``method,dataset,metric,base,new,hm,n_seeds`` with fractions."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "dataset", "metric", "base", "new", "hm", "n_seeds"])
    for method, rows in table.items():
        for dataset, row in rows.items():
            for m in metrics:
                writer.writerow(
                    [method, dataset, m, *(repr(float(row[s].get(m, math.nan))) for s in SIDES), row["n_seeds"]]
                )
    return buffer.getvalue()


def write_tables(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]],
    output_dir: str | os.PathLike,
    metrics: Sequence[str] = ("accuracy", "ece"),
    stem: str = "tables",
) -> tuple[str, str]:
    """Write ``<stem>.md`` and ``<stem>.csv`` into ``output_dir`` and return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    md_path = os.path.join(output_dir, f"{stem}.md")
    csv_path = os.path.join(output_dir, f"{stem}.csv")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(format_markdown(table, metrics))
    with open(csv_path, "w", encoding="utf-8") as f:
        f.write(format_csv(table, metrics))
    return md_path, csv_path


def format_run_summary(results: Mapping[str, Any], metrics: Sequence[str] = ("accuracy", "ece")) -> str:
    """A short text table of one base-to-new run (values ×100), as ``peft-dor train`` prints it.

    Example:
        >>> print(format_run_summary({"base": {"accuracy": 0.8, "ece": 0.03},
        ...                           "new": {"accuracy": 0.6, "ece": 0.1}, "hm": {"accuracy": 0.6857, "ece": 0.065}}))
        metric      base     new      HM
        accuracy   80.00   60.00   68.57
        ece         3.00   10.00    6.50
    """
    lines = [f"{'metric':<8} {'base':>7} {'new':>7} {'HM':>7}"]
    for m in metrics:
        values = [results[side].get(m, math.nan) * 100 for side in SIDES]
        lines.append(f"{m:<8} " + " ".join(f"{v:>7.2f}" for v in values))
    return "\n".join(lines)
