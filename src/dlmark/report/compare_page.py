"""The report's comparison page: ``dlmark report CANDIDATE --baseline BASELINE`` -> ``site/compare.html``.

It shows one ``analysis.compare.Comparison`` and computes nothing of its own:
the ratios with their intervals as a figure (one row per pair, sorted by
effect, coloured by verdict, with the no-change band the threshold draws),
the table ``dlmark compare`` prints (its cells, ``pair_cells``), and the
records of each side that found no partner.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from dlmark.analysis.compare import HEADER, VERDICTS, Comparison, Pair, pair_cells, summary_line

from .datatable import Column
from .site import Figure, Page, SiteContext

if TYPE_CHECKING:
    import pandas as pd

FILE = "compare.html"
TITLE = "Comparison with the baseline"
#: faster green, slower red, same grey (as the terminal's colours); a pair without a verdict orange.
COLOURS = {"faster": "#2ca02c", "slower": "#d62728", "same": "#8c8c8c"}
NO_VERDICT = "no verdict"
NO_VERDICT_COLOUR = "#ff7f0e"
#: Columns of HEADER that hold numbers: sorted by their raw values, not their text.
_NUMERIC = {"baseline/s": "baseline_throughput", "candidate/s": "candidate_throughput",
            "ratio [95% CI]": "ratio", "p": "p_value", "p (adj)": "p_adjusted"}


def _row_labels(pairs: list[Pair]) -> list[str]:
    """'model configuration' per pair; a repeat gets its position, so that every row is its own factor."""
    seen: dict[str, int] = {}
    out = []
    for p in pairs:
        label = f"{p.model} {p.label}"
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def drawn_pairs(result: Comparison) -> list[Pair]:
    """The pairs the figure draws (those with a ratio), the largest slowdown first."""
    return sorted((p for p in result.pairs if p.ratio), key=lambda p: (p.ratio, str(p.model), p.label))


def ratio_figure(result: Comparison):
    """Ratios (candidate / baseline) with their intervals, one row per pair, on a log axis.

    The band around 1 is the threshold: a change inside it reads 'same' even when significant.
    None when no pair has a ratio.
    """
    from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Span
    from bokeh.plotting import figure

    pairs = drawn_pairs(result)
    if not pairs:
        return None
    labels = _row_labels(pairs)
    low_band, high_band = 1 / (1 + result.threshold), 1 + result.threshold
    values = [v for p in pairs for v in (p.ratio, p.ci_low, p.ci_high) if v] + [low_band, high_band]
    span = max(math.log(max(values)), -math.log(min(values)), 0.01)
    fig = figure(y_range=list(reversed(labels)), x_axis_type="log", x_axis_label="candidate / baseline (log axis)",
                 x_range=(math.exp(-1.15 * span), math.exp(1.15 * span)),
                 height=90 + 24 * len(pairs), width=900, sizing_mode="stretch_width",
                 tools="pan,wheel_zoom,box_zoom,reset,save", toolbar_location="above")
    fig.add_layout(BoxAnnotation(left=low_band, right=high_band, fill_color="#bbbbbb", fill_alpha=0.3,
                                 line_color=None))
    fig.add_layout(Span(location=1.0, dimension="height", line_color="#444444", line_dash="dashed", line_width=1))
    for name in VERDICTS + (NO_VERDICT,):
        chosen = [(p, label) for p, label in zip(pairs, labels) if (p.verdict or NO_VERDICT) == name]
        if not chosen:
            continue
        cells = [pair_cells(p) for p, _ in chosen]
        source = ColumnDataSource({
            "row": [label for _, label in chosen],
            "ratio": [p.ratio for p, _ in chosen],
            # A pair without an interval draws its point only: its whisker is the point itself.
            "low": [p.ci_low or p.ratio for p, _ in chosen], "high": [p.ci_high or p.ratio for p, _ in chosen],
            "shown": [c[HEADER.index("ratio [95% CI]")] for c in cells],
            "p_adj": [c[HEADER.index("p (adj)")] for c in cells],
            "verdict": [c[HEADER.index("verdict")] for c in cells],
        })
        colour = COLOURS.get(name, NO_VERDICT_COLOUR)
        fig.segment(x0="low", x1="high", y0="row", y1="row", source=source, line_color=colour, line_width=3)
        fig.scatter(x="ratio", y="row", source=source, size=9, color=colour, legend_label=name)
    fig.add_tools(HoverTool(tooltips=[("pair", "@row"), ("ratio", "@shown"), ("p (adj)", "@p_adj"),
                                      ("verdict", "@verdict")]))
    fig.legend.click_policy = "hide"
    fig.add_layout(fig.legend[0], "right")  # beside the rows, never over a point
    fig.ygrid.grid_line_color = None
    return fig


def comparison_frame(result: Comparison) -> "pd.DataFrame":
    """``dlmark compare``'s table: its columns and cells; numbers as numbers, so that they sort."""
    import pandas as pd

    rows = []
    for p in result.pairs:
        row = {}
        for header, text in zip(HEADER, pair_cells(p)):
            attribute = _NUMERIC.get(header)
            value = getattr(p, attribute) if attribute and header != "ratio [95% CI]" else None
            row[header] = value if isinstance(value, (int, float)) else text
        rows.append(row)
    return pd.DataFrame(rows, columns=list(HEADER))


#: Columns of the comparison table: text, or a number with its digits.
_DIGITS = {"baseline/s": 2, "candidate/s": 2, "p": 4, "p (adj)": 4}
UNPAIRED_COLUMNS = ("model", "task", "scenario", "batch size", "precision", "runtime", "compile mode", "device",
                    "threads", "status", "run")


def unpaired_frame(records: list[dict[str, Any]]) -> "pd.DataFrame":
    """One row per record found on one side only, by the fields that pair records."""
    import pandas as pd

    from dlmark.backends.registry import label as runtime_label

    rows = []
    for r in sorted(records, key=lambda r: (str(r.get("model")), str(r.get("device")), r.get("batch_size") or 0)):
        rows.append(dict(zip(UNPAIRED_COLUMNS, (
            r.get("model"), r.get("task"), r.get("scenario") or (r.get("extra_config") or {}).get("scenario"),
            r.get("batch_size"), r.get("precision") or "fp32", runtime_label(r), r.get("compile_mode") or "eager",
            r.get("device"), r.get("threads"), r.get("status"), r.get("run_id")))))
    return pd.DataFrame(rows, columns=list(UNPAIRED_COLUMNS))


def page(result: Comparison, baseline: str, candidate: str) -> Callable[[SiteContext], Page]:
    """A builder of the comparison page for ``report.site.build_site(..., extra_pages=...)``;
    ``baseline`` and ``candidate`` name the two sides as the user gave them."""
    def build(ctx: SiteContext) -> Page:
        fig = ratio_figure(result)
        drawn = drawn_pairs(result)
        figure = Figure("Candidate / baseline per configuration", model=fig,
                        note="No pair has a ratio to draw (see the table for why).")
        pairs = ctx.table("compare-pairs", comparison_frame(result),
                          [Column(h, h, _DIGITS.get(h)) for h in HEADER])
        numeric = {"batch size": 0, "threads": 0}
        unpaired = [ctx.table(f"compare-unpaired-{side}", unpaired_frame(records),
                              [Column(c, c, numeric.get(c)) for c in UNPAIRED_COLUMNS])
                    for side, records in (("baseline", result.unpaired_baseline),
                                          ("candidate", result.unpaired_candidate))]
        context = {"summary": summary_line(result), "baseline": baseline, "candidate": candidate,
                   "figure": figure, "drawn": len(drawn), "undrawn": len(result.pairs) - len(drawn),
                   "threshold": result.threshold, "pairs": pairs, "unpaired_baseline": unpaired[0],
                   "unpaired_candidate": unpaired[1],
                   "geomean": [(model, g) for model, g in result.geomean.items() if g is not None],
                   "warnings": result.warnings}
        return Page(file=FILE, title=TITLE, template="compare.html", context=context,
                    figures=[figure] if fig is not None else [], tables=[pairs, *unpaired])
    return build
