"""Pareto frontiers of result tables: the rows no other row beats on both axes.

Used by ``dlmark.plot.throughput_vs_accuracy`` to draw the best trade-offs and
meant to back a ``dlmark pareto`` command: it only needs pandas.
"""
from __future__ import annotations

import math

import pandas as pd

from dlmark.errors import UserError


def pareto_frontier(df: pd.DataFrame, x: str = "throughput", y: str = "accuracy", *,
                    maximize_x: bool = True, maximize_y: bool = True) -> pd.DataFrame:
    """The non-dominated rows of ``df`` on columns ``x`` and ``y``.

    A row is dominated when another row is at least as good on both columns and
    strictly better on one; by default higher is better on both (throughput and
    accuracy). Pass ``maximize_x=False`` for a lower-is-better column such as
    ``latency_ms_median``. Rows with a missing value in ``x`` or ``y`` are left
    out; rows that tie exactly are all kept. The result keeps the original index
    and columns and is sorted by ``x`` ascending, so it can be drawn as a line.
    """
    for column in (x, y):
        if column not in df.columns:
            raise UserError(f"pareto_frontier needs a column {column!r}; "
                            f"the data has {', '.join(map(str, df.columns)) or 'no columns'}")
    # Work on positions, not labels: the seed notebook indexes by model, so labels repeat.
    values = df[[x, y]].apply(pd.to_numeric, errors="coerce").reset_index(drop=True).dropna()
    # Flip lower-is-better columns so the sweep below only has to maximize.
    gx = (values[x] if maximize_x else -values[x]).to_dict()
    gy = (values[y] if maximize_y else -values[y]).to_dict()

    # Sweep from the best x down. A row is dominated by a row with strictly better x
    # and y at least as good, or by a row with equal x and strictly better y.
    order = sorted(gx, key=lambda i: (gx[i], gy[i]), reverse=True)
    frontier: list[int] = []
    best_y_at_better_x = -math.inf
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and gx[order[stop]] == gx[order[start]]:
            stop += 1
        group = order[start:stop]
        best_y_in_group = gy[group[0]]  # the group is sorted by y, best first
        for position in group:
            if gy[position] > best_y_at_better_x and gy[position] == best_y_in_group:
                frontier.append(position)
        best_y_at_better_x = max(best_y_at_better_x, best_y_in_group)
        start = stop

    result = df.iloc[frontier]
    return result.sort_values(x, kind="stable")
