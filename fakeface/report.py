"""`fakeface report`: one self-contained HTML page about an MLflow run.

The page has no external references at all (inline CSS, PNGs as base64 data URIs), so it can
be mailed, attached to a ticket or opened offline. It shows the run's info, final metrics,
per-level accuracy, per-epoch history, child runs (folds: mean ± std), its PNG plots, a
preview of its CSV artifacts and the config it ran with.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakeface.cli import base_parser, load_job_config, setup_logging
from fakeface.errors import FakefaceError, TrackingError
from fakeface.registry import configure_mlflow, with_retry

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

LEVELS = ("easy", "mid", "hard", "real", "unknown")
PREVIEW_ROWS = 20
MAX_IMAGES = 40  # a run with more PNGs gets the first ones in PLOT_ORDER only
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_CSVS = 5
MAX_ARTIFACT_DEPTH = 4
# Evaluation plots in reading order; other PNGs follow alphabetically.
PLOT_ORDER = (
    "learning_curves",
    "roc",
    "confusion",
    "score_histogram",
    "confident_grid",
    "gradcam_easy",
    "gradcam_mid",
    "gradcam_hard",
    "gradcam_unknown",
)
# Columns of the child-run table, in this order when present (final values).
CHILD_METRICS = (
    "eval_accuracy",
    "eval_auc",
    "eval_accuracy_easy",
    "eval_accuracy_mid",
    "eval_accuracy_hard",
    "eval_accuracy_real",
    "eval_precision",
    "eval_recall",
    "eval_f1",
    "threshold",
    "epochs_run",
)
RUN_INFO_TAGS = (
    "variant",
    "job",
    "model_uri",
    "registered_version",
    "eval_image_ids_sha256",
    "mlflow.source.git.commit",
    "mlflow.source.name",
)
_LEVEL_METRIC = re.compile(
    r"^(?P<pre>.*?)accuracy_(?P<level>easy|mid|hard|real|unknown)(?P<post>_mean|_std)?$"
)

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1f2328;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem}h3{font-size:1rem}
.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.summary td{background:#fff8c5;font-weight:600}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:.85rem}
code,pre{background:#f6f8fa;border-radius:4px;padding:.1rem .3rem;font-size:.85rem}
pre{padding:.6rem;overflow-x:auto}.note{color:#57606a;font-size:.85rem}
.status-FINISHED{color:#1a7f37}.status-FAILED,.status-KILLED{color:#cf222e}
nav a{margin-right:.8rem}
"""


# ---------------------------------------------------------------------------------------------
# small HTML helpers
# ---------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """A metric value for a table cell: 4 decimals, integers as such, NaN as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value.is_integer() and abs(value) >= 10:
            return f"{int(value)}"
        return f"{value:.4f}"
    return str(value)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] = ()
) -> str:
    """An HTML table; numbers are right-aligned, everything escaped."""
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        cells = []
        for cell in row:
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{_e(_fmt(cell))}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _png_data_uri(data: bytes) -> str:
    """A PNG as a data URI, so the page needs no files next to it."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(data: bytes, caption: str) -> str:
    return (
        f'<figure><img alt="{_e(caption)}" src="{_png_data_uri(data)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _safe_uri(uri: str) -> str:
    """The URI without user:password@, which must not end up in a mailed page."""
    return re.sub(r"//[^/@]*@", "//", uri)


def _time(ms: int | None) -> str:
    if not ms:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start_ms: int | None, end_ms: int | None) -> str:
    if not start_ms or not end_ms:
        return "—"
    seconds = int((end_ms - start_ms) / 1000)
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s"


# ---------------------------------------------------------------------------------------------
# what the page is made of
# ---------------------------------------------------------------------------------------------


def _get_run(client: MlflowClient, run_id: str) -> Run:
    """The run, or one line saying it is not in this store."""
    from mlflow.exceptions import MlflowException

    try:
        return with_retry(lambda: client.get_run(run_id))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise FakefaceError(
                f"run {run_id} not found in {_safe_uri(client.tracking_uri)}"
            ) from None
        first = str(exc.message).splitlines()[0] if exc.message else type(exc).__name__
        raise TrackingError(
            f"cannot read run {run_id} from {_safe_uri(client.tracking_uri)}: {first}"
        ) from None


def _children(client: MlflowClient, run: Run) -> list[Run]:
    """Direct child runs (nested runs), oldest first."""
    runs = with_retry(
        lambda: client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
        )
    )
    return list(runs)


def _history(client: MlflowClient, run: Run) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)] for metrics logged at more than one step (epochs)."""
    out = {}
    for key in sorted(run.data.metrics):
        points = with_retry(lambda k=key: client.get_metric_history(run.info.run_id, k))
        if len(points) > 1:
            # Keep the last value per step: a resumed fit may log a step twice.
            by_step = {p.step: p.value for p in sorted(points, key=lambda p: (p.step, p.timestamp))}
            out[key] = sorted(by_step.items())
    return out


def _artifacts(client: MlflowClient, run_id: str) -> list[tuple[str, int | None]]:
    """(path, size) of every artifact file, depth-limited (a logged model can hold many)."""
    found: list[tuple[str, int | None]] = []

    def walk(path: str | None, depth: int) -> None:
        for info in with_retry(lambda: client.list_artifacts(run_id, path)):
            if info.is_dir:
                if depth < MAX_ARTIFACT_DEPTH:
                    walk(info.path, depth + 1)
            else:
                found.append((info.path, info.file_size))

    try:
        walk(None, 0)
    except Exception as exc:  # an unreachable artifact store still leaves a useful page
        log.warning("cannot list artifacts of run %s: %s", run_id, exc)
    return found


def _plot_key(path: str) -> tuple[int, str]:
    stem = Path(path).stem
    return (PLOT_ORDER.index(stem) if stem in PLOT_ORDER else len(PLOT_ORDER), path)


def _download(client: MlflowClient, run_id: str, path: str, tmp: Path) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, path, str(tmp)))
    except Exception as exc:
        log.warning("cannot download artifact %s of run %s: %s", path, run_id, exc)
        return None


def _read_csv_preview(
    path: Path, rows: int = PREVIEW_ROWS
) -> tuple[list[str], list[list[str]], int]:
    """Header, the first ``rows`` rows and the total row count of a CSV file."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        preview, total = [], 0
        for row in reader:
            if total < rows:
                preview.append(row)
            total += 1
    return header, preview, total


def _as_number(text: str) -> Any:
    """Numbers in CSV cells become floats so the table right-aligns and rounds them."""
    try:
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    except ValueError:
        return text


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (as train.cv_summary logs cv_*_std) of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    mean = sum(finite) / len(finite)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


def _info_section(client: MlflowClient, run: Run) -> str:
    info, tags = run.info, run.data.tags
    experiment = with_retry(lambda: client.get_experiment(info.experiment_id))
    rows: list[tuple[str, Any]] = [
        ("run name", info.run_name or "—"),
        ("run id", info.run_id),
        ("experiment", f"{experiment.name} ({info.experiment_id})"),
        ("status", info.status),
        ("started", _time(info.start_time)),
        ("ended", _time(info.end_time)),
        ("duration", _duration(info.start_time, info.end_time)),
        ("user", info.user_id or "—"),
        ("tracking store", _safe_uri(client.tracking_uri)),
    ]
    if "mlflow.parentRunId" in tags:
        rows.append(("parent run", tags["mlflow.parentRunId"]))
    rows += [(key, tags[key]) for key in RUN_INFO_TAGS if key in tags]
    other = sorted(
        (k, v) for k, v in tags.items() if not k.startswith("mlflow.") and k not in RUN_INFO_TAGS
    )
    body = _table(["field", "value"], rows)
    if other:
        body += "<h3>Other tags</h3>" + _table(["tag", "value"], other)
    return _section("info", "Run", body)


def _metrics_section(run: Run, history: Mapping[str, list[tuple[int, float]]]) -> str:
    metrics = run.data.metrics
    if not metrics:
        return _section("metrics", "Metrics", '<p class="note">No metrics logged.</p>')
    rows = []
    for key in sorted(metrics, key=lambda k: (k in history, not k.startswith("eval_"), k)):
        points = history.get(key)
        if points:
            values = [v for _, v in points]
            # Losses are minimised; every other per-epoch metric here is maximised.
            pick = min if "loss" in key else max
            best_i = pick(range(len(values)), key=values.__getitem__)
            note = f"best {_fmt(values[best_i])} at step {points[best_i][0]} of {len(points)}"
        else:
            note = ""
        rows.append((key, float(metrics[key]), note))
    return _section("metrics", "Metrics", _table(["metric", "final", "history"], rows))


def _levels_section(run: Run, csv_levels: Mapping[str, tuple[int, float]] | None) -> str:
    """Accuracy per difficulty level from metrics (eval_*, cv_*_mean ± std) and predictions."""
    columns: dict[str, dict[str, str]] = {}
    raw: dict[tuple[str, str, str], float] = {}
    for key, value in run.data.metrics.items():
        m = _LEVEL_METRIC.match(key)
        if m:
            raw[(m["pre"], m["level"], m["post"] or "")] = value
    for (pre, level, post), value in raw.items():
        if post == "_std":
            continue
        name = f"{pre}accuracy" + (" (mean ± std)" if post == "_mean" else "")
        text = _fmt(value)
        if post == "_mean" and (pre, level, "_std") in raw:
            text += f" ± {_fmt(raw[(pre, level, '_std')])}"
        columns.setdefault(name, {})[level] = text
    if csv_levels:
        columns["images (predictions.csv)"] = {lv: str(n) for lv, (n, _) in csv_levels.items()}
        columns["accuracy (predictions.csv)"] = {lv: _fmt(a) for lv, (_, a) in csv_levels.items()}
    if not columns:
        return ""
    names = sorted(columns, key=lambda c: ("csv" in c, c))
    levels = [lv for lv in LEVELS if any(lv in columns[c] for c in names)]
    rows = [[lv, *(columns[c].get(lv, "—") for c in names)] for lv in levels]
    return _section("levels", "Per level", _table(["level", *names], rows))


def _levels_from_predictions(path: Path) -> dict[str, tuple[int, float]]:
    """level -> (images, accuracy) from a predictions.csv (label, level, is_fake columns)."""
    counts: dict[str, list[int]] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            try:
                label = int(float(row["label"]))
                pred = row["is_fake"].strip().lower() in ("1", "1.0", "true")
            except (KeyError, ValueError):
                return {}
            level = "real" if label == 0 else (row.get("level") or "unknown")
            total_correct = counts.setdefault(level, [0, 0])
            total_correct[0] += 1
            total_correct[1] += int(pred == bool(label))
    return {lv: (n, c / n) for lv, (n, c) in counts.items()}


def _history_section(history: Mapping[str, list[tuple[int, float]]], plot: bytes | None) -> str:
    if not history:
        return ""
    steps = sorted({s for points in history.values() for s, _ in points})
    keys = sorted(history, key=lambda k: (k.startswith("val_"), k))
    lookup = {k: dict(points) for k, points in history.items()}
    rows = [[s, *(lookup[k].get(s, float("nan")) for k in keys)] for s in steps]
    body = _figure(plot, "per-step history") if plot else ""
    body += (
        f"<details><summary>per-step values ({len(steps)} steps)</summary>"
        f"{_table(['step', *keys], rows)}</details>"
    )
    return _section("history", "History", body)


def _children_section(client: MlflowClient, run: Run, depth: int = 0) -> str:
    """Child runs with their final metrics; runs of one variant (folds) get mean ± std."""
    children = _children(client, run)
    if not children:
        return ""
    keys = [k for k in CHILD_METRICS if any(k in c.data.metrics for c in children)]
    rows: list[list[Any]] = []
    for child in children:
        m = child.data.metrics
        rows.append(
            [
                child.info.run_name or "—",
                child.data.tags.get("variant", "—"),
                child.info.status,
                child.info.run_id,
                *(float(m[k]) if k in m else "—" for k in keys),
            ]
        )
    classes = [""] * len(rows)
    variants = {c.data.tags.get("variant") for c in children}
    note = ""
    if len(children) > 1 and len(variants) == 1:
        # Same variant on different splits: the spread over folds is the honest error bar.
        stats = [_mean_std([c.data.metrics.get(k, float("nan")) for c in children]) for k in keys]
        rows.append(["mean ± std", "", "", f"{len(children)} runs", *(
            f"{_fmt(mean)} ± {_fmt(std)}" for mean, std in stats
        )])  # fmt: skip
        classes.append("summary")
        note = '<p class="note">std: population std over the runs, as in cv_*_std.</p>'
    title = f"Child runs of {run.info.run_name or run.info.run_id}"
    body = _table(["run", "variant", "status", "run id", *keys], rows, classes) + note
    body += (
        '<p class="note">Plots of a child run: <code>fakeface report --run-id RUN_ID'
        " --out FILE.html</code>.</p>"
    )
    if depth == 0:
        # One more level: a multi-variant parent holds cv-<variant> runs holding the folds.
        for child in children:
            nested = _children_section(client, child, depth + 1)
            body += nested.replace("<h2>", "<h3>").replace("</h2>", "</h3>")
    anchor = "children" if depth == 0 else f"children-{run.info.run_id}"
    return _section(anchor, title, body)


def _params_section(run: Run) -> str:
    params = run.data.params
    if not params:
        return _section("config", "Config", '<p class="note">No params logged.</p>')
    rows = [(k, v) for k, v in sorted(params.items())]
    return _section("config", "Config (run params)", _table(["param", "value"], rows))


def _text_section(texts: list[tuple[str, str]]) -> str:
    if not texts:
        return ""
    body = "".join(f"<h3>{_e(path)}</h3><pre>{_e(text)}</pre>" for path, text in texts)
    return _section("notes", "Notes", body)


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------


def render_report(client: MlflowClient, run_id: str) -> str:
    """The self-contained HTML page about run ``run_id`` in ``client``'s tracking store."""
    run = _get_run(client, run_id)
    history = _history(client, run)
    files = _artifacts(client, run_id)
    pngs = sorted((p for p, _ in files if p.lower().endswith(".png")), key=_plot_key)
    sizes = dict(files)
    csvs = sorted(p for p, _ in files if p.lower().endswith(".csv"))
    # predictions.csv first: it is the one a reader wants to see.
    csvs = sorted(csvs, key=lambda p: (Path(p).name != "predictions.csv", p))[:MAX_CSVS]
    texts_wanted = [p for p, s in files if p.lower().endswith(".md") and (s or 0) < 200_000]

    figures, previews, texts = [], [], []
    csv_levels = None
    skipped = 0
    with tempfile.TemporaryDirectory(prefix="fakeface-report-") as tmp_dir:
        tmp = Path(tmp_dir)
        for path in pngs:
            if len(figures) >= MAX_IMAGES or (sizes.get(path) or 0) > MAX_IMAGE_BYTES:
                skipped += 1
                continue
            local = _download(client, run_id, path, tmp)
            if local is not None:
                figures.append(_figure(local.read_bytes(), path))
        for path in csvs:
            local = _download(client, run_id, path, tmp)
            if local is None:
                continue
            header, rows, total = _read_csv_preview(local)
            table = _table(header, [[_as_number(c) for c in row] for row in rows])
            shown = f"first {len(rows)} of {total} rows" if total > len(rows) else f"{total} rows"
            previews.append(f"<h3>{_e(path)}</h3><p class='note'>{shown}</p>{table}")
            if Path(path).name == "predictions.csv" and csv_levels is None:
                csv_levels = _levels_from_predictions(local)
        for path in texts_wanted:
            local = _download(client, run_id, path, tmp)
            if local is not None:
                texts.append((path, local.read_text(encoding="utf-8", errors="replace")))
        history_plot = None
        if history and not any(Path(p).stem == "learning_curves" for p in pngs):
            history_plot = _history_plot(history, tmp / "history.png")

    plots_body = "".join(figures) or '<p class="note">No PNG artifacts.</p>'
    if skipped:
        plots_body += f'<p class="note">{skipped} more PNG artifact(s) not embedded.</p>'
    sections = [
        ("info", _info_section(client, run)),
        ("metrics", _metrics_section(run, history)),
        ("levels", _levels_section(run, csv_levels)),
        ("children", _children_section(client, run)),
        ("history", _history_section(history, history_plot)),
        ("plots", _section("plots", "Plots", plots_body)),
        (
            "predictions",
            _section("predictions", "Predictions", "".join(previews)) if previews else "",
        ),
        ("notes", _text_section(texts)),
        ("config", _params_section(run)),
    ]
    nav = " ".join(f'<a href="#{a}">{_e(a)}</a>' for a, s in sections if s)
    name = run.info.run_name or run.info.run_id
    variant = run.data.tags.get("variant")
    subtitle = f"{variant} · " if variant else ""
    subtitle += (
        f'<span class="status-{_e(run.info.status)}">{_e(run.info.status)}</span>'
        f" · {_e(_time(run.info.start_time))}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>fakeface run {_e(name)}</title><style>{CSS}</style></head><body>"
        f'<h1>fakeface run {_e(name)}</h1><p class="sub">{subtitle}</p><nav>{nav}</nav>'
        + "".join(s for _, s in sections)
        + f'<p class="note">Generated {_e(_time(int(dt.datetime.now(dt.UTC).timestamp() * 1000)))}'
        " by fakeface report.</p></body></html>\n"
    )


def _history_plot(history: Mapping[str, list[tuple[int, float]]], path: Path) -> bytes | None:
    """Learning curves drawn from the metric history, for runs that logged no picture."""
    try:
        from fakeface.evaluate import plot_learning_curves

        plot_learning_curves({k: [v for _, v in pts] for k, pts in history.items()}, path)
        return path.read_bytes()
    except Exception as exc:  # the table below still shows the numbers
        log.warning("cannot draw the history plot: %s", exc)
        return None


def main(argv: list[str] | None = None) -> int:
    """`fakeface report --run-id ID --out FILE.html [--conf FILE]`."""
    parser = base_parser("fakeface report", "write a self-contained HTML report of an MLflow run")
    parser.add_argument("--run-id", required=True, help="the MLflow run to report on")
    parser.add_argument("--out", required=True, help="HTML file to write")
    args = parser.parse_args(argv)
    setup_logging()
    cfg = load_job_config(args)
    client = configure_mlflow(cfg)
    page = render_report(client, args.run_id)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Write next to the target, then rename: a reader never sees half a page.
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise FakefaceError(f"cannot write report {out}: {exc.strerror or exc}") from None
    log.info("wrote %s (%d KiB)", out, len(page) // 1024)
    return 0
