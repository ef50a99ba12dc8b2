"""Draw bench.json (from scripts/bench_host.py) as one PNG: a panel per figure, each figure
beside its baselines (hatched). Bars show median and p99 where there are samples, the one
value otherwise; a skipped row is named on its axis.

    python scripts/bench_plot.py bench-results/bench.json [bench-results/bench.png]
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Row = dict[str, Any]

MEASURED: Final = "#3b6ea8"
MEASURED_P99: Final = "#9bb8d9"
BASELINE: Final = "#8a8a8a"
BASELINE_P99: Final = "#c8c8c8"

SHORT: Final = {
    "a.host_warm": "host, warm",
    "a.poll_10ms_latency": "poller 10 ms",
    "a.poll_1s_latency": "poller 1 s",
    "a.poll_10ms_cpu": "poller 10 ms",
    "a.poll_1s_cpu": "poller 1 s",
    "b.ingest_acked": "to last ack",
    "b.ingest_replied": "to all replies",
    "b.ceiling_each": "commit per msg",
    "b.ceiling_grouped": "one commit",
    "c.host_cpu": "host",
    "c.agents_cpu_total": "all agents",
    "c.agent_cpu": "per agent",
    "d.cold_process": "process",
    "d.cold_docker": "Docker",
    "d.warm_docker": "warm, alone",
    "d.warm_docker_during_start": "warm, while a container starts",
    "e.stop_s": "process",
    "e.stop_docker_s": "Docker",
    "rt.host_cold": "host cold",
    "rt.host_warm": "host warm",
    "rt.container_cold": "container cold",
    "rt.container_events": "container, events",
    "rt.container_poll": "container, poll 10 ms",
    "rt.floor_file": "file -> event",
    "rt.floor_sqlite": "commit -> event",
    "rt.sqlite_commit": "commit alone",
}


def _name(row: Row) -> str:
    name = "\n".join(textwrap.wrap(str(SHORT.get(row["id"], row["id"])), 14))
    return f"{name}\n{row['note']}" if row.get("note") else name


def _pick(rows: dict[str, Row], ids: Sequence[str]) -> list[Row]:
    return [rows[row_id] for row_id in ids if row_id in rows]


def _bars(ax: Axes, rows: list[Row], title: str, unit: str, *, log: bool = False) -> None:
    """A pair of bars (median, p99) per row with samples, one bar per row with a value."""
    for x, row in enumerate(rows):
        colours = (BASELINE, BASELINE_P99) if row.get("baseline") else (MEASURED, MEASURED_P99)
        hatch = "//" if row.get("baseline") else None
        if "skipped" in row:
            ax.text(x, 0.5, "skipped", transform=ax.get_xaxis_transform(), ha="center", rotation=90, fontsize=8)
        elif "median" in row:
            ax.bar(x - 0.2, row["median"], 0.4, color=colours[0], hatch=hatch)
            ax.bar(x + 0.2, row["p99"], 0.4, color=colours[1], hatch=hatch)
            _label(ax, x - 0.2, row["median"])
            _label(ax, x + 0.2, row["p99"])
        elif "value" in row:
            ax.bar(x, row["value"], 0.6, color=colours[0], hatch=hatch)
            _label(ax, x, row["value"])
    ax.set_xticks(range(len(rows)), [_name(row) for row in rows], fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")


def _label(ax: Axes, x: float, value: float) -> None:
    ax.annotate(f"{value:.3g}", (x, value), ha="center", va="bottom", fontsize=7)


def _box(ax: Axes, rows: list[Row], title: str, unit: str) -> None:
    drawn = [row for row in rows if row.get("samples")]
    if drawn:
        ax.boxplot([row["samples"] for row in drawn], whis=(0, 100))
        ax.set_xticks(range(1, len(drawn) + 1), [f"{_name(r)}\nmedian {r['median']:.0f}" for r in drawn], fontsize=8)
    skipped = [f"{SHORT.get(row['id'], row['id'])}: {row['skipped'][:60]}" for row in rows if "skipped" in row]
    if skipped:
        ax.text(0.02, 0.98, "\n".join(skipped), transform=ax.transAxes, va="top", fontsize=7, wrap=True)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)


def _value(rows: dict[str, Row], row_id: str) -> str:
    row = rows.get(row_id, {})
    return "skipped" if "skipped" in row or "value" not in row else f"{row['value']:.0f}"


def draw(document: dict[str, Any], path: Path) -> None:
    rows: dict[str, Row] = {row["id"]: row for row in document["rows"]}
    sizes = document["sizes"]
    figure, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    (latency, ingest, cpu), (cold, stop, roundtrip) = axes
    _bars(
        latency,
        _pick(rows, ["a.host_warm", "a.poll_10ms_latency", "a.poll_1s_latency"]),
        "(a) warm round trip vs. latency a poller adds",
        "ms (median | p99)",
        log=True,
    )
    _bars(
        ingest,
        _pick(rows, ["b.ingest_acked", "b.ingest_replied", "b.ceiling_each", "b.ceiling_grouped"]),
        f"(b) {sizes['messages']} msgs into {sizes['sessions']} sessions; "
        f"lost {_value(rows, 'b.lost')}, twice {_value(rows, 'b.duplicated')}",
        "msg/s",
        log=True,
    )
    _bars(
        cpu,
        _pick(rows, ["c.host_cpu", "c.agents_cpu_total", "c.agent_cpu", "a.poll_10ms_cpu", "a.poll_1s_cpu"]),
        f"(c) idle CPU, {sizes['sessions']} agents, {sizes['idle_s']:.0f} s; pollers over as many files",
        "% of one core",
    )
    _box(
        cold,
        _pick(rows, ["d.cold_process", "d.cold_docker", "d.warm_docker", "d.warm_docker_during_start"]),
        "(d) cold start to first reply; a warm chat while another starts",
        "ms",
    )
    agents = {"e.stop_s": sizes["sessions"], "e.stop_docker_s": 2 * sizes["cold"] + 1}
    _bars(
        stop,
        [row | {"note": f"{agents[row['id']]} agents"} for row in _pick(rows, list(agents))],
        f"(e) SIGTERM -> exit; agents left: {_value(rows, 'e.leftover_agents')}",
        "s",
    )
    stop.axhline(10.0, color="#c0392b", linestyle="--", linewidth=1, label="target 10 s")
    stop.legend(fontsize=8)
    _bars(
        roundtrip,
        [row for row in document["rows"] if row["figure"] == "rt"],
        "(rt) bench_roundtrip rows",
        "ms (median | p99)",
        log=True,
    )
    roundtrip.tick_params(axis="x", labelrotation=60)
    machine = document["machine"]
    figure.suptitle(
        f"hutch host benchmark{' (quick)' if document['quick'] else ''}: {machine['cpu_model']}, "
        f"{machine['cores']} cores, Python {machine['python']}, {machine['disk']['fs']} on "
        f"{machine['disk']['device']}; {document['finished']}",
        fontsize=11,
    )
    figure.text(
        0.5,
        0.005,
        "dark: median (or the one value), light: p99; hatched grey: baseline from the same run",
        ha="center",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0.02, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(argv[0])
    target = Path(argv[1]) if len(argv) == 2 else source.with_suffix(".png")
    draw(json.loads(source.read_text()), target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
