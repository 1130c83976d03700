"""The figures of the scripts written before ``python -m benchmarks``
(overhead.py, async_overhead.py, multiplexing.py) in the common shape the
driver renders: ``{"scenario", "title", "description", "config", "tables",
"plots", "findings"}``."""

from __future__ import annotations

from collections.abc import Callable

OURS = ("openai_api", "ours")


def adapt_overhead(name: str, title: str) -> Callable[[dict], dict]:
    def adapt(document: dict) -> dict:
        config = document["config"]
        contenders = document["contenders"]
        rows = []
        for contender, by_concurrency in contenders.items():
            for concurrency, figures in sorted(by_concurrency.items(), key=lambda kv: int(kv[0])):
                rows.append([
                    contender, int(concurrency), figures["requests_per_s"], figures["p50_ms"], figures["p99_ms"],
                    figures["client_cpu_ms_per_request"], figures.get("failures", 0),
                ])  # fmt: skip
        ratio_rows = []
        for concurrency, ratios in sorted(
            document.get("ratios", {}).items(), key=lambda kv: int(kv[0])
        ):
            for pair, figures in ratios.items():
                ratio_rows.append(
                    [pair, int(concurrency), figures["ratio_of_medians"], figures.get("cpu_ratio")]
                )
        findings = [
            f"{t['name']} at concurrency {t['concurrency']}: {t['measured']:.2f} (target >= {t['minimum']:g}: "
            f"{'met' if t['passed'] else 'not met'})"
            for t in document.get("targets", [])
        ]
        skipped = config.get("skipped") or []
        if skipped:
            findings.append(f"not installed, so not measured: {', '.join(skipped)}")
        return {
            "scenario": name,
            "title": title,
            "description": (
                f"The same chat request at zero server latency, {config.get('requests')} requests per run"
                f" (medians of {config.get('rounds')} rounds, contenders alternating), every contender with its"
                " retries on; the simulator on one core and the client on the other. CPU is the client"
                " process's user+sys time per request."
            ),
            "config": config,
            "tables": [
                {
                    "title": "Per contender and concurrency",
                    "columns": [
                        "contender",
                        "concurrency",
                        "req/s",
                        "p50 ms",
                        "p99 ms",
                        "client CPU ms/req",
                        "failed",
                    ],
                    "rows": rows,
                },
                {
                    "title": "Ratios of requests/s (ours / peer), and of CPU per request (peer / ours)",
                    "columns": ["pair", "concurrency", "throughput ratio", "CPU ratio"],
                    "rows": ratio_rows,
                },
            ],  # fmt: skip
            "plots": [
                {
                    "title": f"{title}: requests/s by concurrency",
                    "kind": "line",
                    "xlabel": "concurrency",
                    "ylabel": "requests/s",
                    "series": {
                        c: [
                            [int(k), v["requests_per_s"]]
                            for k, v in sorted(by.items(), key=lambda kv: int(kv[0]))
                        ]
                        for c, by in contenders.items()
                    },
                }
            ],  # fmt: skip
            "findings": findings,
        }

    return adapt


def adapt_multiplexing(document: dict) -> dict:
    """One row per client, every figure per run (medians over the rounds; failures
    also the worst run): no total over the rounds beside a median."""
    config = document["config"]
    rows = []
    for contender, f in document["contenders"].items():
        rows.append([
            contender, f.get("requests"), f.get("successes"), f.get("failed_median"), f.get("failed"),
            f.get("goodput_per_min"), config.get("budget_per_min"), _percent(f.get("goodput_vs_budget")),
            _percent(f.get("share_429")), _percent(f.get("share_spread")), f.get("client_cpu_ms_per_success"),
        ])  # fmt: skip
    findings = [
        f"{t.get('contender', '')} {t['name']}: {_shown(t['measured'])} (target {t.get('target', '')}: "
        f"{'met' if t.get('passed') else 'not met'})"
        for t in document.get("targets", [])
        if isinstance(t, dict) and "measured" in t
    ]
    skipped = config.get("skipped") or []
    if skipped:
        findings.append(f"not installed, so not measured: {', '.join(skipped)}")
    budget = config.get("budget_per_min")
    return {
        "scenario": "multiplexing",
        "title": "Rate-limited keys: 4 keys, each with its own requests-per-minute limit",
        "description": (
            f"{config.get('requests')} chat requests a run at concurrency {config.get('concurrency')} over"
            f" {config.get('keys')} keys of {config.get('rpm'):g} requests/min each (4R ="
            f" {config.get('ideal_per_min'):g}/min), {config.get('rounds')} round(s); every figure is per run,"
            " the median over the rounds (failed also the worst run). The simulator's limits are fixed windows"
            " opening at a key's first request, so N requests need at least the fixed-window bound"
            f" ({config.get('bound_s', 0):g} s here) and no less: the budget is N per bound"
            + (
                f" ({budget:,.0f}/min, above 4R: each window's quota can be spent at once)"
                if budget
                else ""
            )
            + ". Goodput counts successes over the elapsed time but never less than the bound, so a client"
            " that gives up early earns nothing by it. The 429 share is of the attempts the server saw"
            " (its counters): a client that refuses a request itself has it among its failures instead."
        ),
        "config": config,
        "tables": [
            {
                "title": "Per client, per run",
                "columns": [
                    "contender",
                    "requests",
                    "succeeded",
                    "failed",
                    "failed, worst run",
                    "goodput /min",
                    "budget /min",
                    "goodput % of budget",
                    "429 share % (server)",
                    "key share spread %",
                    "client CPU ms/success",
                ],
                "rows": rows,
            }
        ],  # fmt: skip
        "plots": [
            {
                "title": "Rate-limited keys: goodput against the budget, and attempts answered 429",
                "kind": "bar",
                "xlabel": "contender",
                "ylabel": "%",
                "series": {
                    "goodput % of budget": [[row[0], row[7]] for row in rows],
                    "429 share % (server)": [[row[0], row[8]] for row in rows],
                },
            }
        ],  # fmt: skip
        "findings": findings,
    }


def _shown(measured) -> str:
    """A target's figure as multiplexing.py prints it: a share (a float) in percent, a count as is."""
    if measured is None:
        return "-"
    return f"{measured:.1%}" if isinstance(measured, float) else str(measured)


def _percent(share):
    return None if share is None else 100 * share
