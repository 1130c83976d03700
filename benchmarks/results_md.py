"""RESULTS.md and its PNG plots, from scenario figures in the common shape
(``{"scenario", "title", "description", "config", "tables", "plots",
"findings"}``; a scenario that produced none has ``"error"``)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata

PEERS = ("ipfs_accelerate_py", "aiohttp", "httpx", "openai", "litellm", "uvloop", "matplotlib")


def machine() -> list[str]:
    """What the figures were measured on."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
            memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return [
        f"{cpu}, {os.cpu_count()} cores{memory}",
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    ]


def versions() -> str:
    found = []
    for name in PEERS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")


def table_md(table: dict) -> list[str]:
    columns = table.get("columns") or []
    lines = [
        f"**{table.get('title', '')}**",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in table.get("rows") or []:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    lines.append("")
    return lines


def plot_file(result: dict, index: int) -> str:
    return f"{result['scenario']}-{index + 1}.png"


def render_plots(results: list[dict], directory: str) -> str | None:
    """Write each scenario's plots as PNG; a note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): plots left out"
    os.makedirs(directory, exist_ok=True)
    for result in results:
        for index, plot in enumerate(result.get("plots") or []):
            figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
            series = plot.get("series") or {}
            if plot.get("kind") == "bar":
                _bars(axes, series)
            else:
                for name, points in series.items():
                    if points:
                        xs, ys = zip(*points, strict=False)
                        axes.plot(xs, ys, marker="o", label=name)
                if all(
                    isinstance(x, (int, float)) and x > 0 for pts in series.values() for x, _ in pts
                ):
                    xs = sorted({x for pts in series.values() for x, _ in pts})
                    if len(xs) > 2 and xs[-1] / xs[0] >= 50:
                        axes.set_xscale("log")
            axes.set_title(plot.get("title", ""), fontsize=10)
            axes.set_xlabel(plot.get("xlabel", ""))
            axes.set_ylabel(plot.get("ylabel", ""))
            axes.grid(True, alpha=0.3)
            if len(series) > 1:
                axes.legend(fontsize=8)
            figure.tight_layout()
            figure.savefig(os.path.join(directory, plot_file(result, index)))
            plt.close(figure)
    return None


def _bars(axes, series: dict) -> None:
    categories: list = []
    for points in series.values():
        for label, _ in points:
            if label not in categories:
                categories.append(label)
    width = 0.8 / max(1, len(series))
    for offset, (name, points) in enumerate(series.items()):
        values = dict((label, value) for label, value in points)
        xs = [i + offset * width - 0.4 + width / 2 for i in range(len(categories))]
        axes.bar(xs, [values.get(c, 0) or 0 for c in categories], width=width, label=name)
    axes.set_xticks(range(len(categories)))
    axes.set_xticklabels([str(c) for c in categories], rotation=20, ha="right", fontsize=8)


def targets_md(results: list[dict]) -> list[str]:
    """Every target verdict of the run, the missed ones first, under one heading."""
    verdicts = [(r["scenario"], t) for r in results for t in r.get("targets") or []]
    if not verdicts:
        return []
    missed = [(s, t) for s, t in verdicts if not t["passed"]]
    head = (
        f"Targets: {len(missed)} of {len(verdicts)} missed."
        if missed
        else f"Targets: all {len(verdicts)} met."
    )
    ordered = missed + [(s, t) for s, t in verdicts if t["passed"]]
    return [head, ""] + [f"- {s}: {fmt(t['line'])}" for s, t in ordered] + [""]


def write_results(
    results: list[dict],
    directory: str,
    *,
    command: str,
    quick: bool,
    started: float,
    plots_note: str | None,
) -> str:
    when = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` ({'quick mode: a few seconds a scenario, figures are rough' if quick else 'full mode'}),"
        f" {when}, commit {commit()}.",
        "",
        "- Machine: " + "; ".join(machine()),
        "- Versions: " + versions(),
        "- Server and client on loopback, pinned to different cores where the machine has two.",
        "  Ratios within one run carry over to other machines; absolute figures do not.",
        "",
    ]
    if plots_note:
        lines += [f"_{plots_note}._", ""]
    lines += targets_md(results)
    lines += ["| scenario | what | run time |", "|---|---|---|"]
    for result in results:
        what = result.get("title") or result.get("error", "")
        lines.append(
            f"| [{result['scenario']}](#{result['scenario']}) | {fmt(what)} | {result.get('wall_s', 0):.0f} s |"
        )
    lines.append("")
    for result in results:
        lines += [f"## {result['scenario']}", ""]
        if "error" in result:
            lines += [f"No figures: {result['error']}.", ""]
            continue
        lines += [f"**{result.get('title', '')}**", "", result.get("description", ""), ""]
        if result.get("exit_status") != 0:
            lines += [
                f"_The script exited {result.get('exit_status')}: its figures mean little (see its output)._",
                "",
            ]
        for table in result.get("tables") or []:
            lines += table_md(table)
        findings = result.get("findings") or []
        if findings:
            lines += (
                ["What the figures show:", ""] + [f"- {finding}" for finding in findings] + [""]
            )
        if not plots_note:
            for index, plot in enumerate(result.get("plots") or []):
                lines += [f"![{plot.get('title', '')}](plots/{plot_file(result, index)})", ""]
    path = os.path.join(directory, "RESULTS.md")
    with open(path, "w") as out:
        out.write("\n".join(lines))
    return path
