"""Training curves as a PNG, and a self-contained HTML report around it."""

from __future__ import annotations

import base64
import html
import io

from ringfleet.runs.report import RunReport, rows

PLOT_DPI = 100
# Optimizer settings Keras logs beside the metrics: on the metrics' axis they are a flat
# line at 0 that says nothing (the learning rate stays in the record's history).
NOT_CURVES = frozenset({"lr", "learning_rate"})
PLOT_SIZE = (9, 4)


def png(report: RunReport) -> bytes:
    """The run's curves: losses on the left, every other metric (accuracy...) on the right."""
    import matplotlib

    # Agg: no display, no GUI toolkit; this runs on servers and in CI.
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    losses, others = fig.subplots(1, 2)
    for name, values in sorted(report.history.items()):
        if name in NOT_CURVES:
            continue
        axis = losses if "loss" in name else others
        axis.plot(range(1, len(values) + 1), values, label=name, marker=".")
    for axis, title in ((losses, "loss"), (others, "metrics")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
        else:
            axis.text(0.5, 0.5, "no per-epoch values", ha="center", transform=axis.transAxes)
    fig.suptitle(str(report.record["run_id"]))
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def html_report(report: RunReport, image: bytes) -> str:
    """One file: the table, the plot inlined as base64, the launch script."""
    title = html.escape(str(report.record["run_id"]))
    table = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows(report)
    )
    data = base64.b64encode(image).decode("ascii")
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>run {title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>\n"
        f"<h1>run {title}</h1>\n<table>\n{table}\n</table>\n"
        f'<img alt="training curves" src="data:image/png;base64,{data}">\n'
        f"<h2>launch command</h2>\n<pre>{html.escape(report.launch)}</pre>\n"
        "</body></html>\n"
    )
