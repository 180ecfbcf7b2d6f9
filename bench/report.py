"""Tables from the benchmark's JSON: hatch run bench:report

    python bench/report.py                 rewrite the generated blocks of bench/RESULTS.md
                                           from bench/results/*.json
    python bench/report.py --print         print them instead
    python bench/report.py --profile FILE  the top functions of a py-spy raw profile

RESULTS.md is written by hand around blocks between ``<!-- NAME:begin``
and ``<!-- NAME:end -->`` lines, which the runs rewrite (``write_block``):
``results`` (bench:all, latest.json, with idle10k.json in its targets),
``hostile``, ``compression``, ``engine`` and ``brokers``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import sys
import typing as t
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
MARKDOWN = BENCH / "RESULTS.md"
#: The versions the hostile and compression blocks list (the main one lists all).
KEEP = ("python", "flask-sockets-core", "flask-sockets-gevent", "flask-sockets-gunicorn", "gevent",
        "gevent-websocket", "gunicorn", "websockets", "uvicorn", "uvloop")  # fmt: skip
BASELINE = "gevent-websocket"
OURS = ("ours-gevent", "ours-gunicorn")
#: The workloads of the echo servers; the fan-out has a table of its own.
ECHO = ("small", "large", "handshake", "idle")
#: Fan-out servers: ours, and the Flask-SocketIO setup with the same backend.
FANOUT_PEERS = {"ours-rooms": "flask-socketio", "ours-rooms-redis": "flask-socketio-redis"}

#: (workload, key, heading, format, higher is better)
COLUMNS = [
    ("small", "round_trips_per_s", "32 B echo, round trips/s", "{:,.0f}", True),
    ("small", "p50_ms", "p50 ms", "{:.2f}", False),
    ("small", "p99_ms", "p99 ms", "{:.2f}", False),
    ("large", "mb_per_s", "1 MiB echo, MB/s", "{:,.1f}", True),
    ("handshake", "connections_per_s", "handshakes/s", "{:,.0f}", True),
    ("idle", "kib_per_connection", "idle RSS, KiB/conn", "{:.1f}", False),
]
#: The figure each workload is judged by.
HEADLINE = {
    "small": ("round_trips_per_s", True),
    "large": ("mb_per_s", True),
    "handshake": ("connections_per_s", True),
    "idle": ("kib_per_connection", False),
    "fanout": ("all_received_p50_ms", False),
    "compressed": ("round_trips_per_s", True),
    "fanout-compressed": ("all_received_p50_ms", False),
    "idle-compressed": ("kib_per_connection", False),
}
#: Per server CPU-second columns: (workload, key, heading, format).
EFFICIENCY = {"small": "round_trips_per_s", "large": "mb_per_s", "handshake": "connections_per_s"}
CPU_COLUMNS = [
    ("small", "rt_per_cpu_s", "32 B echo, round trips per CPU-s", "{:,.0f}", True),
    ("large", "mb_per_cpu_s", "1 MiB echo, MB per CPU-s", "{:,.1f}", True),
    ("handshake", "conn_per_cpu_s", "handshakes per CPU-s", "{:,.0f}", True),
]
UNITS = {"small": "round trips/s", "large": "MB/s", "handshake": "connections/s", "idle": "KiB/conn"}
#: The fan-out table: (key, heading, format).
FANOUT_COLUMNS = [
    ("all_received_p50_ms", "all received, p50 ms", "{:.1f}"),
    ("all_received_p90_ms", "p90 ms", "{:.1f}"),
    ("first_received_p50_ms", "first received, p50 ms", "{:.1f}"),
    ("server_cpu_ms_per_round", "server CPU ms per message", "{:.1f}"),
    ("client_cpu_ms_per_round", "load generator CPU ms per message", "{:.1f}"),
]


def load(path: Path) -> dict[str, t.Any] | None:
    try:
        return t.cast("dict[str, t.Any]", json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def figure(data: dict[str, t.Any], server: str, workload: str, key: str) -> float | None:
    result = data["servers"].get(server, {}).get("results", {}).get(workload)
    if not result or "error" in result:
        return None
    if key.endswith("_per_cpu_s"):
        # Work done per second of server CPU time: what the server would do
        # with a whole CPU to itself (for a CPU-bound server).
        work, cpu = result.get(EFFICIENCY[workload]), result.get("server_cpu")
        if not isinstance(work, (int, float)) or not cpu:
            return None
        return float(work) / cpu
    if key == "kib_per_connection":
        value = result.get("rss_per_connection")
        return None if value is None else value / 1024
    value = result.get(key)
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "n/a"
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


def cell(data: dict[str, t.Any], server: str, workload: str, key: str, spec: str) -> str:
    value = figure(data, server, workload, key)
    if value is None:
        result = data["servers"].get(server, {}).get("results", {}).get(workload)
        return "error" if result else "-"
    text = spec.format(value)
    if server == data["meta"]["baseline"]:
        return f"{text} (1.00x)"
    return f"{text} ({fmt_ratio(ratio(value, figure(data, data['meta']['baseline'], workload, key)))})"


def columns(
    data: dict[str, t.Any], which: list[tuple[str, str, str, str, bool]] = COLUMNS
) -> list[tuple[str, str, str, str, bool]]:
    workloads = data["meta"]["settings"]["workloads"]
    return [c for c in which if c[0] in workloads]


def echo_servers(data: dict[str, t.Any]) -> list[str]:
    """The servers of the echo workloads (files from before the fan-out have no "workloads")."""
    return [n for n, s in data["servers"].items() if set(s.get("workloads", ECHO)) & set(ECHO)]


def fanout_servers(data: dict[str, t.Any]) -> list[str]:
    return [n for n, s in data["servers"].items() if "fanout" in s.get("results", {})]


def fanout_rows(data: dict[str, t.Any]) -> list[list[str]]:
    """One row per fan-out server: its figures, then its all-received time
    as a ratio to Flask-SocketIO's with the same backend (lower is better)."""
    rows = [["Server", *(c[1] for c in FANOUT_COLUMNS), "all received vs Flask-SocketIO", "errors"]]
    for name in fanout_servers(data):
        server = data["servers"][name]
        result = server["results"]["fanout"]
        if "error" in result:
            rows.append([server.get("label", name), *(["error"] * len(FANOUT_COLUMNS)), "n/a", result["error"]])
            continue
        cells = [spec.format(result[key]) if isinstance(result.get(key), (int, float)) else "-"
                 for key, _, spec in FANOUT_COLUMNS]  # fmt: skip
        peer = FANOUT_PEERS.get(name)
        key = HEADLINE["fanout"][0]
        ours, theirs = figure(data, name, "fanout", key), figure(data, peer or "", "fanout", key)
        vs = "-" if peer is None else fmt_ratio(ratio(ours, theirs))
        bad = int(result.get("missed", 0)) + int(result.get("error_count", 0))
        rows.append([server.get("label", name), *cells, vs, str(bad)])
    return rows


def one_line(workload: str, result: dict[str, t.Any]) -> str:
    if "error" in result:
        return f"ERROR: {result['error']}"
    usage = f"server CPU {result.get('server_cpu', 0):.0%}, client CPU {result.get('client_cpu', 0):.0%}"
    errors = result.get("errors") or []
    tail = f"  ({len(errors)} errors: {errors[0]})" if errors else ""
    if workload == "small":
        return (
            f"{result['round_trips_per_s']:>9,.0f} rt/s  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
            f"  [{usage}]{tail}"
        )
    if workload == "large":
        return f"{result['mb_per_s']:>9,.1f} MB/s  [{usage}]{tail}"
    if workload == "handshake":
        return f"{result['connections_per_s']:>9,.0f} conn/s  [{usage}]{tail}"
    if workload in ("fanout", "fanout-compressed"):
        return (
            f"{result['all_received_p50_ms']:>9.1f} ms to all {result['connections']} (p50),"
            f" p90 {result['all_received_p90_ms']:.1f} ms, server CPU {result['server_cpu_ms_per_round']:.1f} ms"
            f" per message, missed {result['missed']}"
            + (f", {negotiated_text(result)}" if workload == "fanout-compressed" else "")
            + f", {result.get('wire_bytes_in_per_delivery', 0):,.0f} B/delivery [client CPU"
            f" {result.get('client_cpu_ms_per_round', 0):.1f} ms/message]{tail}"
        )
    if workload == "compressed":
        return (
            f"{result['round_trips_per_s']:>9,.0f} rt/s  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
            f"  wire {result['wire_bytes_out_per_message']:,.0f} B out / {result['wire_bytes_in_per_message']:,.0f} B"
            f" in per message, {negotiated_text(result)}  [{usage}]{tail}"
        )
    per = result["rss_per_connection"] / 1024
    deflated = f", {negotiated_text(result)}" if "negotiation" in result else ""
    return (
        f"{per:>9.1f} KiB/conn  ({result['connections']} open in {result['opened_in_s']:.1f} s,"
        f" failed echoes {result['failed_echoes']}+{result['failed_echoes_after_hold']},"
        f" unexpected closes {result['unexpected_closes']}{deflated}){tail}"
    )


def negotiated_text(result: dict[str, t.Any]) -> str:
    """What the servers answered to the permessage-deflate offer, short."""
    n = result.get("negotiation")
    if not n:
        return "nothing offered"
    if n.get("mode") == "none":
        return "nothing offered"
    params = n.get("params") or {}
    if n.get("connections_with_deflate", 0) == 0:
        return "offered, none negotiated (as expected)" if n.get("mode") == "refuse" else "no compression negotiated"
    top = max(params.items(), key=lambda kv: kv[1])[0] if params else "?"
    count = f" on {n['connections_with_deflate']:,} of {n['connections']:,}" if len(params) > 1 else ""
    return f"negotiated: {top}{count}"


# -- markdown ----------------------------------------------------------------


def md_table(rows: list[list[str]]) -> list[str]:
    out = [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return out


#: The per-CPU-second figure matching each throughput headline.
CPU_KEY = {"small": "rt_per_cpu_s", "large": "mb_per_cpu_s", "handshake": "conn_per_cpu_s"}


def verdict(measured: bool | None, per_cpu: bool | None = None) -> str:
    """Targets are judged on the measured figures; the per-CPU-second ones
    (which other jobs on the machine disturb far less) are a cross-check."""
    if measured is None:
        return "n/a"
    if measured:
        return "yes"
    if per_cpu:
        return "**no** (yes per CPU-s)"
    return "**no**"


#: The targets (issue 20): (our server, workload, peer, bound). With a peer,
#: the bound is a ratio of our figure to the peer's in the same run (at least
#: it where higher is better, at most where lower is); without one, a bound
#: on our figure itself (idle: KiB per connection, at most).
TARGETS: list[tuple[str, str, str | None, float]] = [
    (ours, workload, peer, bound)
    for ours in OURS
    for workload, peer, bound in (
        ("small", "websockets", 1.3), ("large", "websockets", 1.0), ("handshake", "websockets", 0.9),
        ("idle", None, 16.0),
    )
]  # fmt: skip


def targets(data: dict[str, t.Any], idle10k: dict[str, t.Any] | None) -> list[str]:
    """The targets table: each target's measured ratio (and, for the
    throughput workloads, the same per server CPU-second) and whether it is met."""
    lines = ["| Target | Measured (per server CPU-s) | Met |", "|---|---|:---:|"]
    workloads = data["meta"]["settings"]["workloads"]
    for ours, w, peer, bound in TARGETS:
        if w not in workloads or ours not in data["servers"]:
            continue
        key, higher = HEADLINE[w]
        sign = ">=" if higher else "<="
        if peer is None:
            value = figure(data, ours, w, key)
            shown = "n/a" if value is None else f"{value:.1f} {UNITS[w]}"
            met = None if value is None else value <= bound
            lines.append(f"| {ours}: {w} {sign} {bound:g} {UNITS[w]} | {shown} | {verdict(met)} |")
            continue
        measured = ratio(figure(data, ours, w, key), figure(data, peer, w, key))
        per_cpu = ratio(figure(data, ours, w, CPU_KEY[w]), figure(data, peer, w, CPU_KEY[w])) if w in CPU_KEY else None
        shown = fmt_ratio(measured) + (f" ({fmt_ratio(per_cpu)})" if per_cpu is not None else "")

        def ok(r: float | None, bound: float = bound, higher: bool = higher) -> bool | None:
            return None if r is None else (r >= bound if higher else r <= bound)

        lines.append(
            f"| {ours}: {w} {sign} {bound:g}x {peer} | {shown} of {peer}'s | {verdict(ok(measured), ok(per_cpu))} |"
        )
    if idle10k is None:
        lines.append("| 10,000 idle connections on one worker | not run (`hatch run bench:idle10k`) | n/a |")
        return lines
    for ours in [name for name in idle10k["servers"] if name.startswith("ours-")]:
        result = idle10k["servers"][ours].get("results", {}).get("idle")
        if result is None:
            continue
        if "error" in result:
            lines.append(f"| {ours}: 10,000 idle connections on one worker | {result['error']} | **no** |")
            continue
        bad = result["failed_echoes"] + result["failed_echoes_after_hold"] + result["unexpected_closes"]
        bad += len(result.get("errors") or [])
        lines.append(
            f"| {ours}: 10,000 idle connections on one worker, no errors | {result['connections']:,} open,"
            f" held {result['held_s']:.0f} s, {bad} errors, {result['rss_per_connection'] / 1024:.1f} KiB/conn"
            f" (`{idle10k['meta']['command']}`, {idle10k['meta']['date']}) |"
            f" {verdict(bad == 0 and result['connections'] >= 10_000)} |"
        )
    return lines


def loadgen_check(data: dict[str, t.Any]) -> list[str]:
    """For each workload, how busy the load generator was against the fastest server."""
    lines = [
        "| Workload | Fastest server | Its figure | Server CPU | Load generator CPU"
        " | Load generator ceiling (figure / its CPU share) | Verdict | Next fastest: figure, load generator CPU |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]  # fmt: skip
    for w in data["meta"]["settings"]["workloads"]:
        if w not in CPU_KEY:  # the throughput workloads only
            continue
        key, _ = HEADLINE[w]
        ranked = sorted(
            (s for s in data["servers"] if figure(data, s, w, key) is not None),
            key=lambda s: figure(data, s, w, key) or 0.0,
            reverse=True,
        )
        if not ranked:
            continue
        best = ranked[0]
        following = ""
        if len(ranked) > 1:
            nxt = ranked[1]
            following = (
                f"{nxt}: {figure(data, nxt, w, key) or 0.0:,.1f} {UNITS[w]},"
                f" {data['servers'][nxt]['results'][w].get('client_cpu', 0.0):.0%}"
            )
        result = data["servers"][best]["results"][w]
        value = figure(data, best, w, key) or 0.0
        client = result.get("client_cpu", 0.0)
        ceiling = value / client if client else float("inf")
        if client < 0.8:
            verdict = "not the bottleneck: the load generator had CPU to spare"
        else:
            verdict = "**load generator near saturation**: the fastest figure is a lower bound"
        lines.append(
            f"| {w} | {best} | {value:,.1f} {UNITS[w]} | {result.get('server_cpu', 0):.0%} | {client:.0%} |"
            f" {ceiling:,.0f} {UNITS[w]} | {verdict} | {following} |"
        )
    return lines


def cpu_table(data: dict[str, t.Any]) -> list[str]:
    workloads = [w for w in data["meta"]["settings"]["workloads"] if w in CPU_KEY]
    rows = [["Server", *(f"{w}: server / load generator CPU" for w in workloads)]]
    for name in echo_servers(data):
        row = [name]
        for w in workloads:
            result = data["servers"][name]["results"].get(w)
            if not result or "error" in result:
                row.append("-")
            else:
                row.append(f"{result['server_cpu']:.0%} / {result['client_cpu']:.0%}")
        rows.append(row)
    return md_table(rows)


def figure_rows(
    data: dict[str, t.Any], cols: list[tuple[str, str, str, str, bool]], servers: list[str]
) -> list[list[str]]:
    rows = [["Server", *(c[2] for c in cols)]]
    for name in servers:
        rows.append([data["servers"][name]["label"], *(cell(data, name, w, k, f) for w, k, _, f, _ in cols)])
    return rows


def header(data: dict[str, t.Any], title: str, settings: str, keep: tuple[str, ...] = ()) -> list[str]:
    """The first lines of a block: when, how, where and with what a run ran."""
    meta, m, v = data["meta"], data["meta"]["machine"], data["meta"]["versions"]
    return [
        f"{title}: {meta['date']}",
        "",
        f"- Command: `{meta['command']}` (wall time {meta['wall_seconds']:.0f} s)",
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, Linux {m['kernel']}; server pinned to CPU"
        f" {meta['cpus']['server']}, load generator to CPU {meta['cpus']['load_generator']} (a shared machine: other"
        " jobs ran beside this one)",
        f"- Repository: {m['git_commit']}",
        f"- Settings: {settings}",
        "- Versions: " + ", ".join(f"{k} {v[k]}" for k in (keep or v) if k in v),
    ]


def generated(data: dict[str, t.Any], idle10k: dict[str, t.Any] | None) -> str:
    meta = data["meta"]
    s = meta["settings"]
    out = header(data, "## Latest run", f"{s['warmup_s']:g} s warm-up, then {s['duration_s']:g} s measured, a fresh"
        f" server process for each; each throughput workload run {s['repeat']} times, interleaved across servers, and"
        f" the tables keep each server's best run (every run is in the JSON); idle: {s['idle_connections']:,}"
        " connections, once" + (f"; niceness {s['nice']}" if s.get("nice") else "")
        + (f"; variants: {s['variants']}" if s.get("variants") else ""))  # fmt: skip
    out.append("")
    echo = echo_servers(data)
    if columns(data):
        out += [
            f"Each cell: the figure, then (x) = figure / {meta['baseline']}'s figure in the same run."
            " For latency and memory lower is better.",
            "",
        ]
        out += md_table(figure_rows(data, columns(data), echo))
    cpu_cols = columns(data, CPU_COLUMNS)
    if cpu_cols:
        out += [
            "",
            "The same runs per second of server CPU time (work / server CPU share in the window). Other jobs on"
            " this shared machine take CPU time from whichever server is running, which moves the table above;"
            " this one barely moves. For a server that was not CPU-bound (picows, often) it shows what it would do"
            " with the whole CPU.",
            "",
        ]
        out += md_table(figure_rows(data, cpu_cols, echo))
    if fanout_servers(data):
        out += [
            "",
            f"### Fan-out: one message to {s.get('fanout_connections', 1000):,} clients",
            "",
            f"{s.get('fanout_connections', 1000):,} clients join one room; then {s.get('fanout_rounds', 30)} times"
            " (after 3 warm-up rounds), one at a time, an HTTP POST asks the server to publish a 32-byte message to"
            " the room. *All received*: from sending the POST to the last client having the message (p50 and p90"
            " over the rounds); *first received*: to the first client. *Server CPU per message*: the server's CPU"
            " time over the rounds / rounds (the HTTP request, the publish, every delivery; other jobs on the"
            " machine barely move it); the same for the load generator, which reads 1,000 messages per round: where"
            " it comes close to the all-received time, the load generator limits the figure, a lower bound. The"
            " ratio is the all-received time over Flask-SocketIO's with the same backend, in the same run (lower is"
            " better). Errors: messages missed, duplicated or out of order.",
            "",
            *md_table(fanout_rows(data)),
        ]
    errors = []
    for name, server in data["servers"].items():
        for w, result in server["results"].items():
            if "error" in result:
                errors.append(f"- {name}, {w}: {result['error']}")
            elif result.get("errors") or result.get("unexpected_closes"):
                errors.append(
                    f"- {name}, {w}: {len(result.get('errors') or [])} errors,"
                    f" {result.get('unexpected_closes', 0)} unexpected closes: {(result.get('errors') or [''])[0]}"
                )
    out += ["", "Errors: " + ("none." if not errors else ""), *errors, ""]
    if echo and columns(data):
        out += ["### Targets", "", *targets(data, idle10k), ""]
    if columns(data, CPU_COLUMNS):
        out += ["### Load generator check", "", *loadgen_check(data), ""]
        out += [
            "### CPU use in the measurement window",
            "",
            "Share of one CPU used by the server (process tree) and by the load generator. A server below"
            " ~90% was not saturated: latency-bound, or its CPU was taken by other jobs on this shared machine.",
            "",
            *cpu_table(data),
            "",
        ]
    out += ["### Servers", ""]
    for name, server in data["servers"].items():
        out.append(f"- **{name}**: {server['notes']}. `{server['command']}`")
    return "\n".join(out)


# -- hostile workloads ---------------------------------------------------------

#: The hostile workloads, in the order of their tables.
HOSTILE = ("fairness", "fragments", "oversize", "slowloris", "firehose", "flood")
#: The flood targets (on our servers): every attacker closed within this many
#: seconds, and the victim's p99 under attack within this factor of its quiet p99.
FLOOD_CUT_TARGET_S = 1.0
FLOOD_P99_TARGET_RATIO = 2.0
#: The fairness target: the victim's median round trip under attack, on our servers.
VICTIM_P50_TARGET_MS = 50.0
#: ... and no single wait longer than this: the median of the round trips
#: completed says nothing of a victim stalled for most of the window, whose
#: few completed echoes came fast once the server closed the attacker.
VICTIM_LONGEST_TARGET_MS = 1000.0


def _num(value: t.Any, spec: str = "{:,.0f}", none: str = "-") -> str:
    return spec.format(value) if isinstance(value, (int, float)) else none


def _codes(counts: dict[str, int]) -> str:
    """``{"1009": 3, "1006": 1}`` -> ``1009 x3, 1006 x1``, most frequent first."""
    return ", ".join(f"{code} x{n}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def _attackers(detail: list[dict[str, t.Any]], bound_s: float | None = None) -> str:
    """What the server did to the attackers: close codes, after how many frames and seconds."""
    closed = [a for a in detail if a.get("closed_code") is not None]
    still = len(detail) - len(closed)
    parts = []
    by_code: dict[int, list[dict[str, t.Any]]] = {}
    for a in closed:
        by_code.setdefault(a["closed_code"], []).append(a)
    for code, group in sorted(by_code.items()):
        frames = sorted(a["frames_sent"] for a in group)
        secs = sorted(a["closed_after_s"] for a in group)
        mb = max(a["bytes_sent"] for a in group) / 1e6
        span = f"{secs[0]:.1f} s" if secs[0] == secs[-1] else f"{secs[0]:.1f}-{secs[-1]:.1f} s"
        parts.append(f"closed {code} x{len(group)} after <= {frames[-1]:,} frames ({mb:.1f} MB), {span}")
    if still:
        bound = f" at its {bound_s:g} s bound" if bound_s else " at its bound"
        frames = max((a["frames_sent"] for a in detail if a.get("closed_code") is None), default=0)
        parts.append(f"{still} never closed (flood stopped{bound}, {frames:,} frames sent)")
    errors = [a["error"] for a in detail if a.get("error")]
    if errors:
        parts.append(f"{len(errors)} could not connect: {errors[0][:60]}")
    return "; ".join(parts)


def hostile_line(workload: str, result: dict[str, t.Any]) -> str:
    """One line for the console, per hostile scenario."""
    if "error" in result:
        return f"ERROR: {result['error']}"
    died = f"  SERVER EXITED ({result['server_exited']})" if "server_exited" in result else ""
    lg = f"[load generator CPU {result.get('loadgen_cpu_total', 0):.0%}]"
    if workload == "fairness":
        p50 = result.get("victim_p50_ms")
        stalled = result.get("victim_stalled_ms")
        return (
            f"victim {result['victim_echoes']:,} echoes, p50 {_num(p50, '{:.2f}')} ms p99"
            f" {_num(result.get('victim_p99_ms'), '{:.2f}')} ms"
            + (f", one stalled {stalled:,.0f} ms" if stalled else "")
            + f"; attackers: {_attackers(result['attackers_detail'])} {lg}{died}"
        )
    if workload == "fragments":
        return (
            f"{result['frames_sent']:,} frames in {result['flood_s']:.1f} s, RSS +{result['rss_peak_growth_mib']:.1f}"
            f" MiB peak, closes: {_codes(result['close_codes'])} {lg}{died}"
        )
    if workload == "oversize":
        share = result.get("share_1009")
        return f"{_num(share, '{:.0%}')} 1009 of {result['tries']} tries ({_codes(result['close_codes'])}) {lg}{died}"
    if workload == "slowloris":
        return (
            f"{result['dropped']}/{result['opened']} dropped (p50 {_num(result['drop_p50_s'], '{:.1f}')} s, max"
            f" {_num(result['drop_max_s'], '{:.1f}')} s), normal client {result['normal_ok']}/"
            f"{result['normal_attempts']} ok, fds peak {result['fds_peak']} {lg}{died}"
        )
    if workload == "flood":
        quiet, p99 = _num(result.get("victim_quiet_p99_ms"), "{:.2f}"), _num(result.get("victim_p99_ms"), "{:.2f}")
        ratio = _num(result.get("victim_p99_ratio"), "{:.2f}")
        return (
            f"victim p99 {quiet} ms quiet, {p99} ms under attack (x{ratio});"
            f" attackers: {_attackers(result['attackers_detail'])} {lg}{died}"
        )
    if workload == "firehose":
        if not result.get("gave_up"):
            return f"the server's send never gave up in {result['waited_s']:.0f} s {lg}{died}"
        return (
            f"gave up after {_num(result.get('server_send_gave_up_after_s'), '{:.1f}')} s"
            f" ({str(result.get('server_send_ended'))[:70]}), client then saw"
            f" {result.get('client_close_code_seen')} {lg}{died}"
        )
    return json.dumps(result)[:200]


def _scenario_rows(data: dict[str, t.Any], workload: str) -> t.Iterator[tuple[str, str, dict[str, t.Any]]]:
    """(server name, scenario, result) for every server and scenario of ``workload``."""
    for name, server in data["servers"].items():
        result = server.get("results", {}).get(workload)
        if not result:
            continue
        for scenario, r in result.get("scenarios", {}).items():
            yield name, scenario, r


def _error_row(name: str, scenario: str, r: dict[str, t.Any], width: int) -> list[str] | None:
    if "error" not in r:
        return None
    return [name, scenario, f"error: {r['error']}"[:120], *([""] * (width - 3))]


def hostile_tables(data: dict[str, t.Any]) -> list[tuple[str, list[list[str]]]]:
    """(title, rows) for each hostile workload that ran."""
    out: list[tuple[str, list[list[str]]]] = []
    window = data["meta"]["settings"].get("fairness_window_s", 5.0)
    rows: list[list[str]] = [[
        "Server", "Attack", f"victim echoes in {window:g} s", "p50 ms", "p90 ms", "p99 ms",
        "longest wait ms", f"p50 < {VICTIM_P50_TARGET_MS:g} ms, no wait > {VICTIM_LONGEST_TARGET_MS / 1e3:g} s",
        "what the server did to the attackers",
        "victim served again after (s)", "load generator CPU",
    ]]  # fmt: skip
    for name, scenario, r in _scenario_rows(data, "fairness"):
        error = _error_row(name, scenario, r, len(rows[0]))
        if error:
            rows.append(error)
            continue
        p50 = r.get("victim_p50_ms")
        longest = max((v for v in (r.get("victim_max_ms"), r.get("victim_stalled_ms")) if v is not None), default=None)
        met = (
            "yes"
            if p50 is not None and p50 < VICTIM_P50_TARGET_MS and (longest or 0.0) <= VICTIM_LONGEST_TARGET_MS
            else "**no**"
        )
        recovered = r.get("victim_recovered_after_s")
        rows.append([
            name, scenario, f"{r['victim_echoes']:,}", _num(p50, "{:.2f}"), _num(r.get("victim_p90_ms"), "{:.2f}"),
            _num(r.get("victim_p99_ms"), "{:.2f}"), _num(longest, "{:,.0f}"), met,
            _attackers(r["attackers_detail"], window + 1.0),
            _num(recovered, "{:.2f}", str(recovered)), f"{r.get('client_cpu', 0):.0%}",
        ])  # fmt: skip
    if len(rows) > 1:
        out.append(("fairness", rows))
    rows = [[
        "Server", "Flood", "frames sent", "connections open (s)", "server RSS before (MiB)", "peak growth (MiB)",
        "growth after they left (MiB)", "server's closes", "closed after (s, frames), at most", "server CPU",
    ]]  # fmt: skip
    for name, scenario, r in _scenario_rows(data, "fragments"):
        error = _error_row(name, scenario, r, len(rows[0]))
        if error:
            rows.append(error)
            continue
        after = r.get("closed_after_s_max")
        rows.append([
            name, scenario, f"{r['frames_sent']:,}", f"{r['flood_s']:.1f}", f"{r['rss_before_mib']:.1f}",
            f"{r['rss_peak_growth_mib']:.1f}", f"{r['rss_end_growth_mib']:.1f}", _codes(r["close_codes"]),
            "-" if after is None else f"{after:.2f} s, {r['closed_after_frames_max']:,}",
            f"{r.get('server_cpu', 0):.0%}",
        ])  # fmt: skip
    if len(rows) > 1:
        out.append(("fragments", rows))
    sizes = [s for s in ("2MiB", "4MiB", "20MiB") if any(sc == s for _, sc, _ in _scenario_rows(data, "oversize"))]
    rows = [["Server", *(f"{s[:-3]} MiB: share of 1009 (close codes seen)" for s in sizes)]]
    per_server: dict[str, dict[str, str]] = {}
    for name, scenario, r in _scenario_rows(data, "oversize"):
        if "error" in r:
            text = f"error: {r['error']}"[:80]
        else:
            text = f"{_num(r.get('share_1009'), '{:.0%}')} of {r['tries']} ({_codes(r['close_codes'])})"
        per_server.setdefault(name, {})[scenario] = text
    for name, cells in per_server.items():
        rows.append([name, *(cells.get(s, "-") for s in sizes)])
    if len(rows) > 1:
        out.append(("oversize", rows))
    rows = [[
        "Server", "slow connections open", "dropped by the server", "drop time after connect, p50 / max (s)",
        "how", "normal client ok / tries", "its connect p50 / max (ms)", "its echo p50 (ms)",
        "server fds before / peak", "server RSS growth, peak (MiB)", "ran (s)",
    ]]  # fmt: skip
    for name, scenario, r in _scenario_rows(data, "slowloris"):
        error = _error_row(name, scenario, r, len(rows[0]))
        if error:
            rows.append(error)
            continue
        failures = r.get("normal_failures") or {}
        rows.append([
            name, f"{r['opened']:,} of {r['connections']:,}", f"{r['dropped']:,}",
            f"{_num(r['drop_p50_s'], '{:.1f}')} / {_num(r['drop_max_s'], '{:.1f}')}", _codes(r["drop_how"]),
            f"{r['normal_ok']} / {r['normal_attempts']}" + (f" ({_codes(failures)})" if failures else ""),
            f"{_num(r['normal_connect_p50_ms'], '{:.1f}')} / {_num(r['normal_connect_max_ms'], '{:.1f}')}",
            _num(r["normal_echo_p50_ms"], "{:.2f}"), f"{r['fds_before']} / {r['fds_peak']}",
            f"{r['rss_peak_growth_mib']:.1f}", f"{r['ran_s']:.0f}",
        ])  # fmt: skip
    if len(rows) > 1:
        out.append(("slowloris", rows))
    rows = [[
        "Server", "send gave up", "after (s)", "how the send ended (the handler's exception)",
        "sent by then (MiB)", "server's TCP end", "close code the client then read", "server RSS growth (MiB)",
    ]]  # fmt: skip
    for name, scenario, r in _scenario_rows(data, "firehose"):
        error = _error_row(name, scenario, r, len(rows[0]))
        if error:
            rows.append(error)
            continue
        sent = r.get("server_sent_bytes")
        rows.append([
            name, "yes" if r.get("gave_up") else f"**no** (waited {r['waited_s']:.0f} s)",
            _num(r.get("server_send_gave_up_after_s"), "{:.1f}"),
            str(r.get("server_send_ended") or "still sending").replace("|", "/")[:110],
            _num(None if sent is None else sent / 1024**2, "{:,.1f}"),
            f"{r['server_tcp_state']}" + (f" after {r['server_tcp_left_established_after_s']:.0f} s"
                                          if r.get("server_tcp_left_established_after_s") is not None else ""),
            str(r.get("client_close_code_seen") or "-") if r.get("gave_up") else "-",
            f"{r['rss_peak_growth_mib']:.1f}",
        ])  # fmt: skip
    if len(rows) > 1:
        out.append(("firehose", rows))
    rows = flood_rows(data)
    if len(rows) > 1:
        out.append(("flood", rows))
    return out


def flood_rows(data: dict[str, t.Any]) -> list[list[str]]:
    """The table of the ``flood`` workload (header row first)."""
    window = data["meta"]["settings"].get("fairness_window_s", 5.0)
    rows: list[list[str]] = [[
        "Server", "Attack", "victim p50 / p99 quiet (ms)", f"victim echoes in {window:g} s of attack",
        "p50 / p99 under attack (ms)", "p99 / quiet p99", "longest wait ms",
        f"attackers cut within {FLOOD_CUT_TARGET_S:g} s, p99 within {FLOOD_P99_TARGET_RATIO:g}x",
        "what the server did to the attackers", "server CPU", "load generator CPU",
    ]]  # fmt: skip
    for name, scenario, r in _scenario_rows(data, "flood"):
        error = _error_row(name, scenario, r, len(rows[0]))
        if error:
            rows.append(error)
            continue
        ratio, within = r.get("victim_p99_ratio"), r.get("attackers_cut_within_s")
        met = (
            "yes"
            if ratio is not None and ratio <= FLOOD_P99_TARGET_RATIO and within is not None
            and within <= FLOOD_CUT_TARGET_S and not r.get("victim_error")
            else "**no**"
        )  # fmt: skip
        longest = max((v for v in (r.get("victim_max_ms"), r.get("victim_stalled_ms")) if v is not None), default=None)
        rows.append([
            name, scenario,
            f"{_num(r.get('victim_quiet_p50_ms'), '{:.2f}')} / {_num(r.get('victim_quiet_p99_ms'), '{:.2f}')}",
            f"{r['victim_echoes']:,}" + (f" (error: {r['victim_error'][:40]})" if r.get("victim_error") else ""),
            f"{_num(r.get('victim_p50_ms'), '{:.2f}')} / {_num(r.get('victim_p99_ms'), '{:.2f}')}",
            _num(ratio, "{:.2f}"), _num(longest, "{:,.0f}"), met,
            _attackers(r["attackers_detail"], window + 1.0),
            f"{r.get('server_cpu', 0):.0%}", f"{r.get('client_cpu', 0):.0%}",
        ])  # fmt: skip
    return rows


def flood_block(data: dict[str, t.Any]) -> str:
    """The generated part of RESULTS.md for a run of the ``flood`` workload alone."""
    s = data["meta"]["settings"]
    out = header(data, "### Latest flood run", f"window {s.get('fairness_window_s', 5):g} s quiet, then the same"
                 " under attack; a fresh server for each", KEEP)  # fmt: skip
    out += [
        "- Limits every server was held to (`BENCH_DEFAULT_LIMITS=1`):",
        *(f"  - **{name}**: {server.get('limits', '')}" for name, server in data["servers"].items()),
        "",
        HOSTILE_TEXT["flood"],
        "",
        *md_table(flood_rows(data)),
    ]
    return "\n".join(out)


#: What each hostile table shows, above it in RESULTS.md.
HOSTILE_TEXT = {
    "fairness": "A victim connection does 32-byte text echo round trips, one at a time, for the window, while"
    " attackers flood on their own connections, as fast as the server reads them: `fragments-N`: N connections"
    " each send one never-ending binary message as 1-byte continuation frames; `frames-N`: N connections send"
    " complete 8-byte binary messages and read (and discard) the echoes. Victim figures are over the round"
    " trips completed in the window; *longest wait* includes an echo still outstanding when the window ended"
    " (the target needs both: a victim stalled for most of the window and then served fast has a small median);"
    " *served again after*: from the attackers' end (they abort their connections) to the victim's next echo.",
    "fragments": "Connections (1 or 10) each send one never-ending binary message as empty (`empty-N`, up to"
    " 3,000,000 each) or 1-byte (`byte-N`, up to 1,000,000 each) continuation frames, until the bound, the"
    " deadline or the server's close; they stay open 2 s after the flood, then abort. RSS of the server's"
    " process tree, sampled every 0.1 s: before, peak growth, and 1 s after the connections left.",
    "oversize": "`websockets`' sync client, a new connection per try, sends one binary message over the 1 MiB"
    " limit and reads until the connection ends: the close code it received (1006: no close frame, the TCP"
    " connection was cut first).",
    "slowloris": "Slow connections each send one byte of a valid upgrade request every 3 s, until the server drops"
    " them or the bound; meanwhile a normal client connects, does one echo and leaves, once a second. The run"
    " stops early once every slow connection is gone.",
    "flood": "A victim connection does a 32-byte text echo round trip every 20 ms (50 a second), for the window"
    " alone (its quiet figures), then for the window again from the moment 4 attackers start flooding complete"
    " 8-byte text messages on their own connections, as fast as the server reads them (reading and discarding"
    " the echoes), for the window and a second more. Target (issue 22), on our servers, whose flood control is"
    " on by default (100 messages a second, 200 at once): every attacker closed with 1008 within 1 s, and the"
    " victim's p99 under attack within 2x of its quiet p99. `websockets` has no such limit: its attackers flood"
    " to their bound.",
    "firehose": "A client asks `/firehose` for 64 KiB binary messages (one message from it, then the server's"
    " handler sends in a loop) and never reads. *Gave up*: the handler's send failed (it prints when and how),"
    " or the server's end of the TCP connection left ESTABLISHED; then the client reads what is queued for it"
    " (3 s) to see whether a close frame came.",
}


def hostile_block(data: dict[str, t.Any]) -> str:
    """The generated part of RESULTS.md for the hostile workloads."""
    s = data["meta"]["settings"]
    out = header(data, "### Latest hostile run", f"fairness window {s.get('fairness_window_s', 5):g} s; oversize"
        f" {s.get('oversize_tries')} tries per size; fragments deadline {s.get('fragment_seconds')} s; slowloris"
        f" {s.get('slowloris_connections')} connections, at most {s.get('slowloris_seconds')} s; firehose waits at"
        f" most {s.get('firehose_seconds')} s; scenarios: {s.get('scenarios', 'all')}; a fresh server for each"
        " scenario", KEEP)  # fmt: skip
    out += [
        "- Limits every server was held to (`BENCH_DEFAULT_LIMITS=1`):",
        *(f"  - **{name}**: {server.get('limits', '')}" for name, server in data["servers"].items()),
        "",
    ]
    for title, rows in hostile_tables(data):
        out += [f"#### {title}", "", HOSTILE_TEXT[title], "", *md_table(rows), ""]
    return "\n".join(out)


# -- compression workloads -----------------------------------------------------

#: The compressed fan-out targets: ours compressed within this factor of ours
#: uncompressed, and ahead of Flask-SocketIO uncompressed.
FANOUT_COMPRESSED_MAX_RATIO = 1.3


def _case_rows(data: dict[str, t.Any], workload: str) -> t.Iterator[tuple[str, dict[str, t.Any], dict[str, t.Any]]]:
    """(row name, server entry, result) of every server case that ran ``workload``."""
    for name, server in data["servers"].items():
        result = server.get("results", {}).get(workload)
        if result:
            yield name, server, result


def _negotiated_cell(result: dict[str, t.Any]) -> str:
    n = result.get("negotiation")
    if not n:
        return "-" if "error" in result else "not offered"
    if n.get("mode") == "none":
        return "not offered"
    if n.get("connections_with_deflate", 0) == 0:
        return "none (as expected)" if n.get("mode") == "refuse" else "**none**"
    answers = n.get("answers") or {}
    top = max(answers.items(), key=lambda kv: kv[1])[0] if answers else "?"
    return f"`{top}`" + (f" ({n['connections_with_deflate']:,} of {n['connections']:,})" if len(answers) > 1 else "")


def _bad(result: dict[str, t.Any]) -> str:
    bad = int(result.get("error_count", len(result.get("errors") or [])))
    bad += int(result.get("missed", 0)) + int(result.get("unexpected_closes", 0))
    bad += int(result.get("failed_echoes", 0)) + int(result.get("failed_echoes_after_hold", 0))
    return str(bad)


def _inflates(result: dict[str, t.Any]) -> str:
    """How many compressed messages the load generator inflated, and how many
    it did not inflate again (server_no_context_takeover: identical bytes)."""
    if "inflates" not in result:
        return "-"
    return f"{result['inflates']:,} / {result.get('inflates_shared', 0):,}"


def compression_tables(data: dict[str, t.Any]) -> list[tuple[str, list[list[str]], list[str]]]:
    """(title, rows, notes under the table) for each compression workload that ran."""
    out: list[tuple[str, list[list[str]], list[str]]] = []
    s = data["meta"]["settings"]
    size = s.get("compressed_message_bytes", 4096)
    rows = [[
        "Server", "case", "server's Sec-WebSocket-Extensions", "round trips/s", "p50 ms", "p99 ms",
        "wire B/message, client -> server", "server -> client", "round trips per server CPU-s", "server CPU",
        "load generator CPU", "load generator inflated / reused", "errors",
    ]]  # fmt: skip
    busiest = 0.0
    for name, server, r in _case_rows(data, "compressed"):
        base, case = server.get("base", name), server.get("case", "")
        if "error" in r:
            what = f"**{r['error']}**" if "negotiat" in r["error"] else f"error: {r['error']}"[:100]
            rows.append([base, case, _negotiated_cell(r), what, *(["-"] * 9)])
            continue
        busiest = max(busiest, r.get("client_cpu", 0.0))
        cpu = r.get("server_cpu") or float("nan")
        rows.append([
            base, case, _negotiated_cell(r), f"{r['round_trips_per_s']:,.0f}", f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}", f"{r['wire_bytes_out_per_message']:,.0f}", f"{r['wire_bytes_in_per_message']:,.0f}",
            f"{r['round_trips_per_s'] / cpu:,.0f}", f"{r.get('server_cpu', 0):.0%}", f"{r.get('client_cpu', 0):.0%}",
            _inflates(r), _bad(r),
        ])  # fmt: skip
    if len(rows) > 1:
        out.append((
            f"compressed: {size:,}-byte JSON echo, 50 connections, permessage-deflate",
            rows,
            [
                f"Uncompressed, a {size:,}-byte text message is {size + 8:,} bytes on the wire from the client (masked)"
                f" and {size + 4:,} from the server. Wire bytes are the kernel's TCP counters of the client sockets"
                " over the window / round trips (frame headers included).",
                "*Inflated / reused*: compressed echoes the load generator inflated, and those it did not inflate"
                " again because the server declared server_no_context_takeover and the same bytes had come before"
                " (bench/deflate.py).",
                f"Load generator: at most {busiest:.0%} of its CPU in any window here"
                + (" (headroom: the figures are the servers')." if busiest < 0.8 else " (**near saturation**)."),
            ],
        ))  # fmt: skip
    fanout_size = s.get("fanout_message_bytes", 1024)
    rows = [[
        "Server", "case", "server's Sec-WebSocket-Extensions", "all received, p50 ms", "p90 ms",
        "first received, p50 ms", "server CPU ms per message", "load generator CPU ms per message",
        "wire B per delivery", "load generator inflated / reused", "vs ours uncompressed", "vs Flask-SocketIO",
        "errors",
    ]]  # fmt: skip
    key = HEADLINE["fanout-compressed"][0]

    def headline(name: str) -> float | None:
        return figure(data, name, "fanout-compressed", key)

    ours_plain = headline("ours-rooms/uncompressed")
    socketio = headline("flask-socketio/uncompressed")
    for name, server, r in _case_rows(data, "fanout-compressed"):
        base, case = server.get("base", name), server.get("case", "")
        if "error" in r:
            rows.append([base, case, _negotiated_cell(r), f"error: {r['error']}"[:100], *(["-"] * 9)])
            continue
        value = headline(name)
        rows.append([
            base, case, _negotiated_cell(r), f"{r['all_received_p50_ms']:.1f}", f"{r['all_received_p90_ms']:.1f}",
            f"{r['first_received_p50_ms']:.1f}", f"{r['server_cpu_ms_per_round']:.1f}",
            f"{r['client_cpu_ms_per_round']:.1f}", f"{r.get('wire_bytes_in_per_delivery', 0):,.0f}", _inflates(r),
            fmt_ratio(ratio(value, ours_plain)), fmt_ratio(ratio(value, socketio)), _bad(r),
        ])  # fmt: skip
    if len(rows) > 1:
        notes = [
            f"{s.get('fanout_connections', 1000):,} clients in one room; {s.get('fanout_rounds', 30)} rounds, each"
            f" a POST of a {fanout_size:,}-byte JSON document that the server publishes to the room. Wire bytes:"
            " what each client's socket received per message (kernel TCP counters over the measured rounds)."
            " *Inflated / reused*: with server_no_context_takeover every client gets the same bytes, which the load"
            " generator (1,000 clients in one process) inflates once."
        ]
        ours = headline("ours-rooms/deflate")
        if ours is not None:
            within = ratio(ours, ours_plain)
            ahead = ratio(ours, socketio)
            notes.append(
                f"Targets: compressed <= {FANOUT_COMPRESSED_MAX_RATIO:g}x ours uncompressed: {fmt_ratio(within)}"
                f" ({verdict(None if within is None else within <= FANOUT_COMPRESSED_MAX_RATIO)}); ahead of"
                f" Flask-SocketIO uncompressed: {fmt_ratio(ahead)} ({verdict(None if ahead is None else ahead < 1)})."
            )
        out.append((f"fanout-compressed: one {fanout_size:,}-byte JSON message to every client", rows, notes))
    rows = [[
        "Server", "case", "server's Sec-WebSocket-Extensions", "idle RSS, KiB/conn", "vs off, KiB/conn",
        "echoes compressed / not", "errors",
    ]]  # fmt: skip
    offs = {server.get("base"): figure(data, name, "idle-compressed", "kib_per_connection")
            for name, server, _ in _case_rows(data, "idle-compressed") if server.get("case") == "off"}  # fmt: skip
    connections = 0
    for name, server, r in _case_rows(data, "idle-compressed"):
        base, case = server.get("base", name), server.get("case", "")
        if "error" in r:
            rows.append([base, case, _negotiated_cell(r), f"error: {r['error']}"[:100], "-", "-", "-"])
            continue
        connections = r.get("connections", connections)
        kib = r["rss_per_connection"] / 1024
        off = offs.get(base)
        rows.append([
            base, case, _negotiated_cell(r), f"{kib:.1f}", "-" if off is None or case == "off" else f"{kib - off:+.1f}",
            f"{r.get('echoes_compressed', 0):,} / {r.get('echoes_uncompressed', 0):,}", _bad(r),
        ])  # fmt: skip
    if len(rows) > 1:
        out.append((
            f"idle-compressed: server RSS per idle connection after one {size:,}-byte JSON message each way",
            rows,
            [
                f"{connections:,} connections, each: permessage-deflate offered, one message sent (compressed if"
                " negotiated), its echo received; then RSS of the server's process tree over the RSS before them."
                " *Echoes compressed*: those that came back with RSV1 (the server's compressor was used)."
            ],
        ))  # fmt: skip
    return out


def compression_block(data: dict[str, t.Any]) -> str:
    """The generated part of RESULTS.md for the compression workloads."""
    st = data["meta"]["settings"]
    out = header(data, "### Latest compression run", f"{st['warmup_s']:g} s warm-up, {st['duration_s']:g} s"
        f" measured, best of {st['repeat']} (interleaved); idle: {st['idle_connections']:,} connections, once",
        (*KEEP, "picows", "flask-socketio"))  # fmt: skip
    out += [
        "- Cases:",
        *(f"  - **{name}**: {server['notes']}" for name, server in data["servers"].items()),
        "",
    ]
    for title, rows, notes in compression_tables(data):
        out += [f"#### {title}", "", *md_table(rows), "", *notes, ""]
    return "\n".join(out)


# -- RESULTS.md -----------------------------------------------------------------


def write_block(name: str, block: str, heading: str = "", path: Path = MARKDOWN) -> Path:
    """Put ``block`` between the lines ``<!-- NAME:begin ... -->`` and
    ``<!-- NAME:end -->`` of RESULTS.md, keeping everything around them (the
    findings written by hand); where there are no such markers yet, append
    the block under ``## HEADING``. Every bench entry point writes its table
    with this."""
    begin, end = f"<!-- {name}:begin", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    marked = f"{begin} (generated by {Path(sys.argv[0]).name}; the text around it is kept) -->\n\n{block}\n\n{end}"
    start = text.find(begin)
    stop = text.find(end, start)
    if start >= 0 and stop >= 0:
        text = text[:start] + marked + text[stop + len(end) :]
    else:
        text = text.rstrip("\n") + f"\n\n## {heading or name}\n\n{marked}\n"
    path.write_text(text)
    return path


@dataclasses.dataclass
class Block:
    """A generated block of RESULTS.md: its JSON in bench/results/, the hatch
    script that makes it, the heading it goes under when it is new, its maker."""

    source: str
    script: str
    heading: str
    make: t.Callable[[dict[str, t.Any]], str]


BLOCKS = {
    "results": Block("latest.json", "all", "Latest run", lambda data: generated(data, load(RESULTS / "idle10k.json"))),
    "hostile": Block("hostile.json", "hostile", "Hostile clients", hostile_block),
    "flood": Block("flood.json", "hostile --workloads flood", "Flood control", flood_block),
    "compression": Block("compression.json", "compression", "Compression (permessage-deflate)", compression_block),
}


def block(name: str, source: Path | None = None) -> str:
    """The block ``name`` from its JSON (``source``, else the usual file)."""
    path = source or RESULTS / BLOCKS[name].source
    data = load(path)
    if data is None:
        raise SystemExit(f"no {path}: run `hatch run bench:{BLOCKS[name].script}` first")
    return BLOCKS[name].make(data)


# -- profiles ----------------------------------------------------------------


def read_profile(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """py-spy's raw (collapsed) format: ``frame;frame;... count`` per line."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_function(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    return own, total, samples


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (path/file.py)``: one entry per function."""
    frame = frame.strip()
    head, sep, tail = frame.rpartition(":")
    if sep and tail.endswith(")") and tail[:-1].isdigit():
        return head + ")"
    return frame


def profile_summary(path: Path, n: int = 5) -> str:
    own, _, samples = read_profile(path)
    if not samples:
        return "no samples"
    return ", ".join(f"{f.split(' (')[0]} {c / samples:.0%}" for f, c in own.most_common(n))


def print_profile(path: Path, n: int) -> None:
    own, total, samples = read_profile(path)
    print(f"{path}: {samples} samples")
    print("\nself time:")
    for f, c in own.most_common(n):
        print(f"  {c / samples:6.1%}  {f}")
    print("\ninclusive time:")
    for f, c in total.most_common(n):
        print(f"  {c / samples:6.1%}  {f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the blocks instead of writing them")
    parser.add_argument("--profile", type=Path, help="summarise a py-spy raw profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.profile:
        print_profile(args.profile, args.top)
        return
    names = [name for name, b in BLOCKS.items() if (RESULTS / b.source).exists()]
    if not names:
        sys.exit(f"nothing in {RESULTS}: run `hatch run bench:all`, `bench:hostile` or `bench:compression` first")
    for name in names:
        text = block(name)
        print(text if args.print else f"wrote {write_block(name, text, BLOCKS[name].heading)} ({name})")


if __name__ == "__main__":
    main()
