"""``rr report``: one self-contained HTML page about a run.

The page holds the resolved config, the training curves (PNG as data URIs), the
evaluations logged in ``metrics.jsonl`` (per rating bucket where the evaluator
reports them) and a gallery of test puzzles, solved and failed, with the decoded
answer after every ACT step from the run's checkpoint. In the gallery a cell is
marked *changed* (blue corner) where the answer differs from the step before and
*wrong* (red frame) where it differs from the label; tasks draw their puzzles
through their ``TaskSpec.view`` (:mod:`rrcore.contracts.views`). No scripts, no network: the file
can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import datetime
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rrcore.contracts.views import Panel, PuzzleView, puzzle_view
from rrcore.data.format import IGNORE_LABEL
from rrcore.tools import plots
from rrcore.tools.stepwise import trace_steps

if TYPE_CHECKING:
    from rrcore.tools.stepwise import OpenRun, StepTrace

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #1d1d1f;
       background: #fff; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 15px; margin: 0 0 8px; }
.meta { color: #555; font-size: 13px; }
.curves { display: flex; flex-wrap: wrap; gap: 12px; } .curves img { width: 480px; border: 1px solid #eee; }
table.metrics { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.metrics th { background: #f3f3f3; } table.metrics td:first-child { text-align: left; }
pre.config { background: #f7f7f7; padding: 12px; font-size: 12px; overflow-x: auto; }
.puzzle { border: 1px solid #ccc; border-radius: 6px; padding: 12px; margin: 12px 0; }
.puzzle.solved { border-left: 6px solid #2ca02c; } .puzzle.failed { border-left: 6px solid #d62728; }
.steps { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; color: #444; margin-top: 4px; max-width: 220px; }
.panel-title { font-size: 11px; color: #777; margin: 2px 0; }
table.grid { border-collapse: collapse; margin-bottom: 4px; }
table.grid td { width: 22px; height: 22px; padding: 0; text-align: center; vertical-align: middle;
                font: 13px ui-monospace, monospace; }
table.grid td.cell { border: 1px solid #aaa; }
table.grid.small td { width: 11px; height: 11px; font-size: 7px; }
table.grid td.bl { border-left: 2px solid #222; } table.grid td.bt { border-top: 2px solid #222; }
td.cell.given { font-weight: bold; }
td.cell.changed { background-image: linear-gradient(135deg, #1f77b4 0 7px, transparent 7px); }
td.cell.wrong { box-shadow: inset 0 0 0 2px #d62728; color: #d62728; }
.halts { color: #2ca02c; font-weight: bold; } .legend td.cell { width: 22px; height: 22px; }
.legend { font-size: 13px; display: flex; gap: 18px; align-items: center; }
"""


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def panel_html(
    panel: Panel, answer: np.ndarray | None = None, labels: np.ndarray | None = None, previous: np.ndarray | None = None
) -> str:
    """A panel as a table; with ``answer``, cells naming a position are marked ``wrong``
    (scored ``labels`` differ) and ``changed`` (``previous`` answer differs)."""
    width = max((len(row) for row in panel.rows), default=0)
    small = " small" if max(width, len(panel.rows)) > 12 else ""
    out = [f'<div class="panel-title">{_escape(panel.title)}</div><table class="grid{small}">']
    for r, row in enumerate(panel.rows):
        out.append("<tr>")
        for c, cell in enumerate(row):
            classes = []
            if panel.block and c and c % panel.block == 0:
                classes.append("bl")
            if panel.block and r and r % panel.block == 0:
                classes.append("bt")
            if cell is None:
                out.append(f'<td class="{" ".join(classes)}"></td>')
                continue
            classes.append("cell")
            attributes = ""
            if cell.given:
                classes.append("given")
            if cell.position is not None:
                attributes += f' data-pos="{cell.position}"'
                if (
                    answer is not None
                    and labels is not None
                    and labels[cell.position] != IGNORE_LABEL
                    and answer[cell.position] != labels[cell.position]
                ):
                    classes.append("wrong")
                if answer is not None and previous is not None and answer[cell.position] != previous[cell.position]:
                    classes.append("changed")
            style = f' style="background-color:{_escape(cell.colour)}"' if cell.colour else ""
            out.append(f'<td class="{" ".join(classes)}"{attributes}{style}>{_escape(cell.text)}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _halts(trace: StepTrace, step: int, row: int) -> bool:
    """Whether the run's halting rule would stop this row after ``step`` (eval runs every step)."""
    if trace.q_continue is not None:
        return bool(trace.q_halt[step, row] > trace.q_continue[step, row])
    return bool(trace.q_halt[step, row] > 0)


def puzzle_html(view: PuzzleView, trace: StepTrace, row: int, pad_id: int) -> str:
    """One gallery card: the input, the answer after each ACT step, the label."""
    inputs, labels = trace.inputs[row], trace.labels[row]
    shown_labels = np.where(labels == IGNORE_LABEL, pad_id, labels)
    solved = bool(trace.correct()[-1, row])
    scored = labels != IGNORE_LABEL
    wrong_last = int(((trace.preds[-1, row] != labels) & scored).sum())
    status = "solved" if solved else f"failed: {wrong_last} wrong at the last step"
    out = [
        f'<section class="puzzle {"solved" if solved else "failed"}" data-index="{int(trace.index[row])}">',
        f"<h3>Test example {int(trace.index[row])}: {status}</h3>",
        '<div class="steps">',
    ]
    out.append(
        '<figure class="input">'
        + "".join(panel_html(p) for p in view.draw_input(inputs))
        + "<figcaption>input</figcaption></figure>"
    )
    previous = None
    for step in range(trace.steps):
        answer = trace.preds[step, row]
        wrong = int(((answer != labels) & scored).sum())
        changed = 0 if previous is None else int((answer != previous).sum())
        q_text = f"q_halt {trace.q_halt[step, row]:+.2f}"
        if trace.q_continue is not None:
            q_text += f", q_continue {trace.q_continue[step, row]:+.2f}"
        halts = ' · <span class="halts">would halt</span>' if _halts(trace, step, row) else ""
        panels = "".join(
            panel_html(p, answer, labels, previous) for p in view.draw_answer(answer, inputs, shown_labels)
        )
        out.append(
            f'<figure class="step" data-step="{step + 1}" data-wrong="{wrong}">{panels}'
            f"<figcaption>step {step + 1} · {q_text}{halts} · {wrong} wrong"
            f"{f' · {changed} changed' if previous is not None else ''}</figcaption></figure>"
        )
        previous = answer
    out.append(
        '<figure class="label">'
        + "".join(panel_html(p) for p in view.draw_answer(shown_labels, inputs, shown_labels))
        + "<figcaption>expected</figcaption></figure>"
    )
    out.append("</div></section>")
    return "".join(out)


def _numeric(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return f"{value:.0f}"  # counts
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else _escape(value)


def evaluation_tables(rows: list[dict[str, Any]]) -> str:
    """The evaluations in ``metrics.jsonl``: one row per evaluation (overall metrics), then
    the latest evaluation by rating bucket when the evaluator reports buckets."""
    evaluations = [row for row in rows if any("/" in k and not k.startswith("train/") for k in row)]
    if not evaluations:
        return "<p>No evaluation was logged (the run has no test split, evaluators or evaluation yet).</p>"
    overall = sorted(
        {
            k
            for row in evaluations
            for k in row
            if k.count("/") == 1 and not k.startswith("train/") and not k.endswith("/count")
        }
    )
    out = ['<table class="metrics" id="evaluations"><tr><th>step</th>']
    out += [f"<th>{_escape(k)}</th>" for k in overall] + ["</tr>"]
    for row in evaluations:
        out.append(
            f"<tr><td>{_escape(row.get('step'))}</td>"
            + "".join(f"<td>{_numeric(row, k)}</td>" for k in overall)
            + "</tr>"
        )
    out.append("</table>")
    latest = evaluations[-1]
    buckets: dict[str, dict[str, str]] = {}
    for key in latest:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] != "train":
            buckets.setdefault(parts[2], {})[f"{parts[0]}/{parts[1]}"] = key
    if buckets:
        metrics = sorted({m for bucket in buckets.values() for m in bucket})
        out.append(f"<h3>By rating bucket (evaluation at step {_escape(latest.get('step'))})</h3>")
        out.append(
            '<table class="metrics" id="buckets"><tr><th>bucket</th>'
            + "".join(f"<th>{_escape(m)}</th>" for m in metrics)
            + "</tr>"
        )
        for name in sorted(buckets, key=_bucket_order):
            out.append(
                f"<tr><td>{_escape(name)}</td>"
                + "".join(
                    f"<td>{_numeric(latest, buckets[name][m]) if m in buckets[name] else ''}</td>" for m in metrics
                )
                + "</tr>"
            )
        out.append("</table>")
    return "".join(out)


def _bucket_order(name: str) -> tuple[float, str]:
    digits = "".join(ch if ch.isdigit() else " " for ch in name).split()
    return (float(digits[0]) if digits else float("inf"), name)


def curves_html(run_dir: Path) -> str:
    if not plots.have_matplotlib():
        return f"<p>No curves: matplotlib is not installed ({_escape(plots.INSTALL_HINT)}).</p>"
    images = plots.curve_images(run_dir)
    if not images:
        return "<p>No metrics logged yet.</p>"
    return (
        '<div class="curves">'
        + "".join(
            f'<img alt="{_escape(name)} curve" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            for name, png in images.items()
        )
        + "</div>"
    )


LEGEND = (
    '<div class="legend"><table class="grid"><tr><td class="cell changed">3</td></tr></table> changed since '
    'the step before <table class="grid"><tr><td class="cell wrong">2</td></tr></table> differs from the '
    'label <table class="grid"><tr><td class="cell given">1</td></tr></table> given in the puzzle</div>'
)


def build_report(run: OpenRun, trace: StepTrace, view: PuzzleView, per_kind: int) -> str:
    """The page for ``run``: ``per_kind`` solved and ``per_kind`` failed puzzles of ``trace``."""
    experiment = run.experiment
    metadata = run.run.metadata
    final = trace.correct()[-1]
    solved = [int(i) for i in np.flatnonzero(final)[:per_kind]]
    failed = [int(i) for i in np.flatnonzero(~final)[:per_kind]]
    config = (run.run_dir / "config.toml").read_text()
    name = experiment.run.name
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    gallery = []
    for title, rows in (("Solved", solved), ("Failed", failed)):
        gallery.append(f'<h3 class="gallery-title">{title} ({len(rows)} shown)</h3>')
        gallery += [puzzle_html(view, trace, row, metadata.pad_id) for row in rows]
        if not rows:
            gallery.append(f"<p>None among the {trace.count} test examples run.</p>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>rr report: {_escape(name)}</title><style>{STYLE}</style></head><body>",
            f"<h1>rr report: {_escape(name)}</h1>",
            f'<p class="meta">Model <b>{_escape(experiment.model.plugin)}</b> on data <b>{_escape(experiment.data.plugin)}'
            f"</b> · weights: {_escape(run.label)} · run folder {_escape(run.run_dir)} · written {now}</p>",
            "<h2>Curves</h2>",
            curves_html(run.run_dir),
            "<h2>Evaluations</h2>",
            evaluation_tables(plots.read_metrics(run.run_dir)),
            "<h2>Puzzles, step by step</h2>",
            f'<p class="meta" id="scan-summary">The first {trace.count} test examples through all '
            f"{trace.steps} ACT steps ({_escape(run.label)}): {int(final.sum())} solved at the last step, "
            f"{int((~final).sum())} failed.</p>",
            LEGEND,
            *gallery,
            "<h2>Resolved config</h2>",
            f'<pre class="config">{html.escape(config, quote=False)}</pre>',
            "</body></html>",
        ]
    )


def write_report(run: OpenRun, output: Path, per_kind: int = 4, scan: int = 256) -> Path:
    """Run ``scan`` test examples step by step and write the report to ``output``."""
    trace = trace_steps(run, scan)
    view = puzzle_view(run.run.registry, run.experiment.data.plugin, run.run.metadata)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(build_report(run, trace, view, per_kind), encoding="utf-8")
    return output
