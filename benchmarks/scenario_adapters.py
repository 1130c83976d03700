"""The figures of the scripts written before ``python -m benchmarks``
(overhead.py, async_overhead.py, multiplexing.py) in the common shape the
driver renders: ``{"scenario", "title", "description", "config", "tables",
"plots", "findings"}``."""

from __future__ import annotations

from typing import Callable

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
        for concurrency, ratios in sorted(document.get("ratios", {}).items(), key=lambda kv: int(kv[0])):
            for pair, figures in ratios.items():
                ratio_rows.append([pair, int(concurrency), figures["ratio_of_medians"], figures.get("cpu_ratio")])
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
                {"title": "Per contender and concurrency",
                 "columns": ["contender", "concurrency", "req/s", "p50 ms", "p99 ms", "client CPU ms/req", "failed"],
                 "rows": rows},
                {"title": "Ratios of requests/s (ours / peer), and of CPU per request (peer / ours)",
                 "columns": ["pair", "concurrency", "throughput ratio", "CPU ratio"], "rows": ratio_rows},
            ],  # fmt: skip
            "plots": [{
                "title": f"{title}: requests/s by concurrency",
                "kind": "line", "xlabel": "concurrency", "ylabel": "requests/s",
                "series": {c: [[int(k), v["requests_per_s"]] for k, v in sorted(by.items(), key=lambda kv: int(kv[0]))]
                           for c, by in contenders.items()},
            }],  # fmt: skip
            "findings": findings,
        }

    return adapt


def adapt_multiplexing(document: dict) -> dict:
    config = document["config"]
    rows = []
    for contender, f in document["contenders"].items():
        rows.append([
            contender, f.get("requests"), f.get("failed"), f.get("goodput_per_min"), _percent(f.get("vs_bound")),
            _percent(f.get("share_429")), _percent(f.get("share_spread")), f.get("client_cpu_ms_per_success"),
        ])  # fmt: skip
    findings = [
        f"{t.get('contender', '')} {t['name']}: {t['measured']:.3g} (target {t.get('target', '')}: "
        f"{'met' if t.get('passed') else 'not met'})"
        for t in document.get("targets", [])
        if isinstance(t, dict) and "measured" in t
    ]
    return {
        "scenario": "multiplexing",
        "title": "Rate-limited keys: 4 keys, each with its own requests-per-minute limit",
        "description": (
            f"{config.get('requests')} chat requests at concurrency {config.get('concurrency')} over"
            f" {config.get('keys')} keys of {config.get('rpm'):g} requests/min each (the ideal is"
            f" {config.get('ideal_per_min'):g}/min in all): goodput, the share of attempts answered 429,"
            " failed requests, and how evenly the keys were used. The simulator's limits are fixed windows, so"
            " a client can exceed R per minute across a window boundary: the fixed-window bound is the most"
            " any client could get through."
        ),
        "config": config,
        "tables": [{
            "title": "Per contender",
            "columns": ["contender", "requests", "failed", "goodput /min", "% of the fixed-window bound",
                        "429 share %", "key share spread %", "client CPU ms/success"],
            "rows": rows,
        }],  # fmt: skip
        "plots": [{
            "title": "Rate-limited keys: share of attempts answered 429",
            "kind": "bar", "xlabel": "contender", "ylabel": "429 share %",
            "series": {"429 share %": [[row[0], row[5]] for row in rows]},
        }],  # fmt: skip
        "findings": findings,
    }


def _percent(share):
    return None if share is None else 100 * share
