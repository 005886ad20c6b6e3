"""RESULTS.md from the results: a table per workload, ratios, and the issue's targets."""

from __future__ import annotations

import statistics
from typing import Any

Results = dict[str, Any]

ORDER = ("direct", "prismgate-quiet", "prismgate", "prismgate-keys", "prismgate-keys-pg",
         "prismgate-traced", "litellm", "portkey")  # fmt: skip
PEERS = (("litellm", "LiteLLM"), ("portkey", "Portkey"))
RSS_LIMIT_MB = 250
# prismgate with keys, budgets and spend logging on, against plain prismgate (issue 12 §6):
# c=32 throughput within 10 %, added p50 at c=1 within 0.1 ms.
KEYED = (("prismgate-keys", "SQLite"), ("prismgate-keys-pg", "PostgreSQL"))
# prismgate with something on or off, each compared by round with another build: with
# plain prismgate, or with plain prismgate built without its access log and metrics.
VARIANTS = (("prismgate-keys", "prismgate"), ("prismgate-keys-pg", "prismgate"),
            ("prismgate-traced", "prismgate"), ("prismgate", "prismgate-quiet"),
            ("prismgate-traced", "prismgate-quiet"))  # fmt: skip
KEYED_MIN_THROUGHPUT = 0.9
KEYED_MAX_EXTRA_P50_MS = 0.1
# The access log, the metrics and the traces, all on, against none of them (issue 13):
# c=32 throughput within 5 %.
TELEMETRY_MIN_THROUGHPUT = 0.95


def _workload(results: Results, key: str) -> Results | None:
    return next((w for w in results["workloads"] if w["key"] == key), None)


def _row(results: Results, key: str, name: str) -> Results | None:
    workload = _workload(results, key)
    if workload is None:
        return None
    row = workload["results"].get(name)
    return row if row and row["status"] == "ok" else None


def added_p50(results: Results, key: str, name: str) -> float | None:
    """The gateway's median p50 minus the direct upstream's, in ms."""
    row, direct = _row(results, key, name), _row(results, key, "direct")
    if not row or not direct or not row["requests"] or not direct["requests"]:
        return None
    return float(row["p50_ms"] - direct["p50_ms"])


def ratio(results: Results, key: str, peer: str) -> float | None:
    """prismgate's successful req/s over `peer`'s."""
    ours, theirs = _row(results, key, "prismgate"), _row(results, key, peer)
    if not ours or not theirs or not theirs["ok_per_s"]:
        return None
    return float(ours["ok_per_s"] / theirs["ok_per_s"])


def vs_plain(results: Results, key: str, variant: str, plain: str = "prismgate") -> Results | None:
    """A variant of prismgate (`VARIANTS`) against plain prismgate (or `plain`, another
    build) in workload `key`.

    Paired by round (the two run one after the other in each round, so drift and other
    work on the machine hit both alike): `ratio` is the median over the rounds of the
    variant's req/s over plain req/s, `extra_p50_ms` the median of its p50 minus plain's;
    `ratios` and `extra_p50s` per round. `median_ratio` and `median_extra_p50_ms` compare
    the tables' medians instead; `extra_cpu_us` is the CPU per answer's difference."""
    on, off = _row(results, key, variant), _row(results, key, plain)
    if not on or not off or not on["requests"] or not off["requests"] or not off["ok_per_s"]:
        return None
    pairs = [(a, b) for a, b in zip(on["runs"], off["runs"], strict=False) if b["ok_per_s"]]
    if not pairs:
        return None
    ratios = [a["ok_per_s"] / b["ok_per_s"] for a, b in pairs]
    extra = [a["p50_ms"] - b["p50_ms"] for a, b in pairs]
    cpu = None
    if on.get("cpu_us_per_ok") and off.get("cpu_us_per_ok"):
        cpu = float(on["cpu_us_per_ok"] - off["cpu_us_per_ok"])
    return {
        "ratio": float(statistics.median(ratios)),
        "extra_p50_ms": float(statistics.median(extra)),
        "ratios": ratios,
        "extra_p50s": extra,
        "median_ratio": float(on["ok_per_s"] / off["ok_per_s"]),
        "median_extra_p50_ms": float(on["p50_ms"] - off["p50_ms"]),
        "extra_cpu_us": cpu,
        "on": on,
        "off": off,
    }


def _why_not(results: Results, key: str, names: tuple[str, ...]) -> str:
    """Why a target could not be judged: the reasons of the rows that are missing."""
    workload = _workload(results, key)
    if workload is None:
        return f"{key} not run"
    reasons = []
    for name in names:
        row = workload["results"].get(name)
        if row is None:
            reasons.append(f"{name} not run")
        elif row["status"] != "ok":
            reasons.append(f"{name}: {row['reason']}")
    return "; ".join(reasons) or "—"


def _verdict(target: str, value: float | None, limit: float, *, at_most: bool,
             shown: str) -> Results:  # fmt: skip
    if value is None:
        return {"target": target, "status": "not measured", "numbers": shown or "—"}
    met = value <= limit if at_most else value >= limit
    return {"target": target, "status": "met" if met else "missed", "numbers": shown}


def evaluate_targets(results: Results) -> list[Results]:
    """The issue's targets for prismgate (one worker on one core): met, missed or not measured."""
    verdicts = []
    for key, limit, label in (("image-small-c1", 0.5, "Small answer"),
                              ("image-large-b64", 3.0, "Large b64 answer")):  # fmt: skip
        added = added_p50(results, key, "prismgate")
        shown = _ms(added, "+") if added is not None else _why_not(results, key, ORDER[:2])
        verdicts.append(_verdict(f"{label}: added p50 <= {limit:g} ms at c=1 ({key})",
                                 added, limit, at_most=True, shown=shown))  # fmt: skip
    factors = {
        ("image-small-c32", "portkey"): 2, ("image-small-c32", "litellm"): 15,
        ("image-large-b64", "portkey"): 5, ("image-large-b64", "litellm"): 5,
        ("vision-chat-c32", "portkey"): 3, ("vision-chat-c32", "litellm"): 5,
    }  # fmt: skip
    for (key, peer), factor in factors.items():
        value = ratio(results, key, peer)
        ours, theirs = _row(results, key, "prismgate"), _row(results, key, peer)
        shown = (f"{value:.1f}x ({ours['ok_per_s']:,.0f} vs {theirs['ok_per_s']:,.0f} req/s)"
                 if value is not None and ours and theirs
                 else _why_not(results, key, ("prismgate", peer)))  # fmt: skip
        label = dict(PEERS)[peer]
        verdicts.append(_verdict(f"Throughput >= {factor}x {label}'s ({key})", value, factor,
                                 at_most=False, shown=shown))  # fmt: skip
    verdicts += _keyed_targets(results)
    verdicts += _telemetry_targets(results)
    slow, slow_workload = _row(results, "slow-c1000", "prismgate"), _workload(results, "slow-c1000")
    if slow and slow_workload:
        # Every connection has a request in flight all the time: all succeed means no
        # error of any kind, and at least one answer per connection.
        connections = slow_workload["connections"]
        failed = slow["non_2xx"] + slow["socket_errors"]
        verdicts.append({
            "target": "1,000 concurrent requests on the 1 s upstream: all succeed (slow-c1000)",
            "status": "met" if failed == 0 and slow["requests"] >= connections else "missed",
            "numbers": f"{slow['requests']:,} answers on {connections:,} connections, "
                       f"{slow['non_2xx']} non-2xx, {slow['socket_errors']} socket "
                       f"errors/timeouts",
        })  # fmt: skip
        rss = slow["peak_process_rss_mb"]
        verdicts.append(_verdict(
            f"Peak RSS of the worker <= {RSS_LIMIT_MB} MB during slow-c1000", rss, RSS_LIMIT_MB,
            at_most=True,
            shown=f"{rss:.0f} MB (process tree {slow['peak_rss_mb']:.0f} MB, "
                  f"lifetime high-water mark {slow['lifetime_hwm_mb']:.0f} MB)",
        ))  # fmt: skip
    else:
        why = _why_not(results, "slow-c1000", ("prismgate",))
        for target in (
            "1,000 concurrent requests on the 1 s upstream: all succeed (slow-c1000)",
            f"Peak RSS of the worker <= {RSS_LIMIT_MB} MB during slow-c1000",
        ):
            verdicts.append({"target": target, "status": "not measured", "numbers": why})
    return verdicts


def _keyed_targets(results: Results) -> list[Results]:
    """Keys, budgets and spend on vs plain prismgate, for each keyed target that ran."""
    verdicts = []
    for keyed, store in KEYED:
        if keyed not in results["gateways"]:
            continue
        names = ("prismgate", keyed)
        verdicts.append(_throughput_verdict(
            results, keyed, "prismgate", KEYED_MIN_THROUGHPUT,
            f"Keys, budgets, spend on ({store}): throughput >= "
            f"{KEYED_MIN_THROUGHPUT:.0%} of plain prismgate's (image-small-c32)",
        ))  # fmt: skip
        c1 = vs_plain(results, "image-small-c1", keyed)
        shown = (
            f"{_ms(c1['extra_p50_ms'], '+')} paired by round "
            f"({', '.join(_ms(d, '+') for d in c1['extra_p50s'])}); medians "
            f"p50 {_ms(c1['on']['p50_ms'])} vs {_ms(c1['off']['p50_ms'])} "
            f"({_ms(c1['median_extra_p50_ms'], '+')})"
            if c1 else _why_not(results, "image-small-c1", names)
        )  # fmt: skip
        verdicts.append(_verdict(
            f"Keys, budgets, spend on ({store}): p50 <= plain prismgate's + "
            f"{KEYED_MAX_EXTRA_P50_MS:g} ms at c=1 (image-small-c1)",
            c1["extra_p50_ms"] if c1 else None, KEYED_MAX_EXTRA_P50_MS, at_most=True,
            shown=shown,
        ))  # fmt: skip
    return verdicts


def _telemetry_targets(results: Results) -> list[Results]:
    """The access log, metrics and traces on (prismgate-traced) against none of them
    (prismgate-quiet), when both ran."""
    if not all(name in results["gateways"] for name in ("prismgate-quiet", "prismgate-traced")):
        return []
    return [_throughput_verdict(
        results, "prismgate-traced", "prismgate-quiet", TELEMETRY_MIN_THROUGHPUT,
        f"Access log, metrics and traces on: throughput >= {TELEMETRY_MIN_THROUGHPUT:.0%} "
        "of prismgate's without them (image-small-c32)",
    )]  # fmt: skip


def _throughput_verdict(
    results: Results, variant: str, plain: str, least: float, target: str
) -> Results:
    """`variant`'s c=32 throughput at least `least` of `plain`'s, paired by round."""
    c32 = vs_plain(results, "image-small-c32", variant, plain)
    shown = (
        f"{c32['ratio']:.0%} paired by round "
        f"({', '.join(f'{r:.0%}' for r in c32['ratios'])}); medians "
        f"{c32['on']['ok_per_s']:,.0f} vs {c32['off']['ok_per_s']:,.0f} req/s "
        f"({c32['median_ratio']:.0%})"
        if c32 else _why_not(results, "image-small-c32", (plain, variant))
    )  # fmt: skip
    return _verdict(target, c32["ratio"] if c32 else None, least, at_most=False, shown=shown)


# ---------------------------------------------------------------- formatting


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _ms(value: float, sign: str = "") -> str:
    """Milliseconds, to the microsecond below 1 ms; `sign="+"` shows the sign."""
    if abs(value) < 1:
        return f"{value:{sign}.3f} ms"
    return f"{value:{sign}.2f} ms" if abs(value) < 100 else f"{value:{sign},.0f} ms"


def _mb(size: float) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


def _table(results: Results, workload: Results) -> list[str]:
    labels = {name: info["label"] for name, info in results["gateways"].items()}
    lines = [
        "| gateway | req/s (2xx) | p50 | p99 | added p50 | non-2xx | socket errors | peak RSS "
        "| CPU per answer | core share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ORDER:
        row = workload["results"].get(name)
        if row is None:
            continue
        if row["status"] != "ok":
            lines.append(f"| {labels[name]} | n/a ({_cell(row['reason'])}) |" + "  |" * 9)
            continue
        added = added_p50(results, workload["key"], name)
        shown_added = "—" if name == "direct" or added is None else _ms(added, "+")
        p50, p99 = _ms(row["p50_ms"]), _ms(row["p99_ms"])
        if not row["requests"]:  # nothing answered within the run: no latency to show
            p50 = p99 = shown_added = "—"
        rss = f"{row['peak_rss_mb']:.0f} MB" + (" (nginx)" if name == "direct" else "")
        cpu = f"{row['cpu_us_per_ok']:,.0f} µs" if row.get("cpu_us_per_ok") else "—"
        share = f"{row['cpu_share']:.0%}" if "cpu_share" in row else "—"
        lines.append(
            f"| {labels[name]} | {_rate(row['ok_per_s'])} | {p50} | {p99} | {shown_added} | "
            f"{row['non_2xx']:,} | "
            f"{row['socket_errors']:,} | {rss} | {cpu} | {share} |"
        )
    lines += [
        f"\n{labels[name]} stopped early: {row['stopped_early']}"
        for name in ORDER
        if (row := workload["results"].get(name)) and row.get("stopped_early")
    ]
    ratios = [
        f"prismgate / {label}: **{value:.1f}x**"
        for peer, label in PEERS
        if (value := ratio(results, workload["key"], peer)) is not None
    ]
    for variant, plain in VARIANTS:
        compared = (
            vs_plain(results, workload["key"], variant, plain)
            if variant in labels and plain in labels
            else None
        )
        if compared is None:
            continue
        cpu = compared["extra_cpu_us"]
        ratios.append(
            f"{labels[variant]} / {labels[plain]}, paired by round: "
            f"**{compared['ratio']:.0%}**, "
            f"p50 {_ms(compared['extra_p50_ms'], '+')}"
            + (f", CPU per answer {cpu:+,.0f} µs" if cpu is not None else "")
        )
    if ratios:
        lines += ["", "Throughput ratios: " + " · ".join(ratios)]
    return lines


def markdown(results: Results) -> str:
    settings, machine, versions = results["settings"], results["machine"], results["versions"]
    sizes = results["canned_sizes_bytes"]
    kind = "Quick smoke run" if results["quick"] else "Full run"
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run.sh` (see [README.md](README.md) for what is measured and how).",
        "",
        f"- **Date:** {results['date']}; the run took {results['elapsed_s']} s.",
        f"- **Run:** {kind}: {settings['duration_s']:g} s per run, {settings['rounds']} "
        f"interleaved round(s), median shown, {settings['warmup_s']:g} s warm-up per gateway; "
        f"the 1,000-connection run {settings['slow_duration_s']:g} s x "
        f"{settings['slow_rounds']} round(s); wrk timeout {settings['wrk_timeout_s']:g} s.",
        f"- **Machine:** nproc {machine['nproc']}, {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}"
        + (f", load average at the end {' / '.join(map(str, machine['loadavg_at_end']))}"
           if "loadavg_at_end" in machine else "")
        + ". Gateway pinned to core "
        f"{settings['gateway_cpu']}; nginx (1 worker) and wrk pinned to core "
        f"{settings['load_cpu']}.",
        "- **Versions:** " + ", ".join(
            f"{name} {versions[key]}" for key, name in (
                ("prismgate", "prismgate"), ("litellm", "LiteLLM"),
                ("portkey", "Portkey gateway"), ("nginx", "nginx"), ("wrk", "wrk"),
                ("node", "Node"),
            ) if key in versions
        ) + ".",
        f"- **Canned answers:** small url answer {sizes.get('small', 0)} B; large b64_json "
        f"answer {_mb(sizes.get('large', 0))} (a 1024x1024 PNG of "
        f"{_mb(sizes.get('large_png', 0))}); vision request data URL "
        f"{_mb(sizes.get('vision_data_url', 0))}.",
    ]  # fmt: skip
    for info in results["gateways"].values():
        if "accounting" in info:
            books = info["accounting"]
            lines.append(
                f"- **{info['label']}:** the load used a key made with `POST /key/generate` "
                f"(budget, budget_duration, rpm and ipm limits set, never reached); at the end "
                + (f"the spend log held {books['spend_log_rows']:,} rows "
                   f"(${books['spend_log_usd']:,.2f}) for {books['answered_2xx_counted_by_wrk']:,}"
                   f" 2xx answers counted by wrk, and the key's spend was "
                   f"${books['key_spend_usd']:,.2f}."
                   if "error" not in books else f"the accounting failed: {_cell(books['error'])}.")
            )  # fmt: skip
    missing = [info for info in results["gateways"].values() if not info["available"]]
    for info in missing:
        lines.append(f"- **Not available:** {info['label']}: {_cell(info['reason'])}")
    lines += ["", "## Targets (prismgate, one worker on one core)", "",
              "| target | result | numbers |", "| --- | --- | --- |"]  # fmt: skip
    marks = {"met": "met", "missed": "**missed**", "not measured": "not measured"}
    lines += [f"| {t['target']} | {marks[t['status']]} | {_cell(t['numbers'])} |"
              for t in results["targets"]]  # fmt: skip
    for workload in results["workloads"]:
        lines += ["", f"## {workload['title']}", "",
                  f"`{workload['key']}`: wrk -c{workload['connections']} "
                  f"-t{workload['threads']}, {workload['rounds']} x {workload['seconds']:g} s.",
                  ""]  # fmt: skip
        lines += _table(results, workload)
    lines += [
        "",
        "req/s counts 2xx answers only. p50/p99 are wrk's, the median over the rounds. Added "
        "p50 is the gateway's p50 minus the direct upstream's in the same workload. non-2xx "
        "is wrk's count of answers with status >= 400, socket errors its connect/read/write "
        "errors and timeouts, both summed over the rounds. Peak RSS is the highest VmRSS of "
        "the process tree sampled every 50 ms during the workload. CPU per answer is the "
        "CPU time (user + system) of the target's process tree during a run over its 2xx "
        "answers, and core share that CPU time over the run's duration (below ~95% at c=32, "
        "something else was using the gateway's core), both the median over the rounds. "
        "Raw numbers: "
        "[results.json](results.json).",
        "",
    ]
    return "\n".join(lines)
