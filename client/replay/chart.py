"""The replay's PNG: stacked bills per configuration, and a timeline of workers (matplotlib).

matplotlib is a client tool (requirements-tools.txt), never installed in the
worker's environment; it is imported here only, when a chart is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from client.replay.summary import RULES, SPLIT, RunSummary

COLOURS = {"boot": "#9e9e9e", "engine_start": "#ef6c00", "jobs": "#1565c0", "idle": "#c5cae9"}
STATE_COLOURS = {"initializing": "#ef6c00", "idle": "#c5cae9", "running": "#1565c0"}
RULE_TITLES = {"startup_billed": "start-up billed", "initializing_unbilled": "Initializing unbilled"}


def write_chart(runs: Sequence[RunSummary], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1 + len(runs), 1, figsize=(10, 3.2 + 1.2 * len(runs) + sum(0.25 * len(r.workers) for r in runs)),
        gridspec_kw={"height_ratios": [3] + [max(1, len(r.workers)) * 0.5 + 0.6 for r in runs]},
    )  # fmt: skip
    bills = axes[0]
    labels, positions = [], []
    for i, run in enumerate(runs):
        for j, rule in enumerate(RULES):
            x = i * (len(RULES) + 1) + j
            positions.append(x)
            labels.append(f"{run.name}\n{RULE_TITLES[rule]}")
            bottom = 0.0
            shares = _split_usd(run, rule)
            for kind in SPLIT:
                value = shares[kind]
                bills.bar(x, value, bottom=bottom, color=COLOURS[kind], label=kind if x == 0 else None)
                bottom += value
            bills.text(x, bottom, f"${run.bill_usd(rule):.4f}", ha="center", va="bottom", fontsize=8)
    bills.set_xticks(positions, labels, fontsize=7)
    bills.set_ylabel(f"USD at ${runs[0].hourly_rate:g}/h" if runs else "USD")
    bills.set_title("The bill per configuration (the platform's ledger), split as the workers counted it")
    bills.legend(fontsize=8)
    for ax, run in zip(axes[1:], runs, strict=True):
        _timeline(ax, run)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _split_usd(run: RunSummary, rule: str) -> dict[str, float]:
    """The ledger's bill under `rule`, divided in the proportions of the workers' own split."""
    counted = {k: run.budget_seconds.get(k, 0.0) for k in SPLIT}
    if rule == "initializing_unbilled" and run.budget_counts_initializing:
        counted["boot"] = 0.0  # what Initializing covers when the start-up is not billed
    total = sum(counted.values())
    bill = run.bill_usd(rule)
    if total <= 0:
        return {k: (bill if k == "jobs" else 0.0) for k in SPLIT}
    return {k: bill * v / total for k, v in counted.items()}


def _timeline(ax: object, run: RunSummary) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    end = max([w.exited or 0.0 for w in run.workers] + [j.finished for j in run.jobs] + [1.0])
    for row, worker in enumerate(run.workers):
        ready = worker.ready if worker.ready is not None else (worker.exited or end)
        ax.barh(row, ready - worker.spawned, left=worker.spawned, color=STATE_COLOURS["initializing"])
        ax.barh(row, (worker.exited or end) - ready, left=ready, color=STATE_COLOURS["idle"])
    for job in run.jobs:
        ax.plot([job.submitted, job.finished], [-0.8, -0.8], color=STATE_COLOURS["running"], linewidth=1, alpha=0.6)
    ax.set_yticks(range(len(run.workers)), [w.worker_id for w in run.workers], fontsize=7)
    ax.set_xlim(0, end * 1.02)
    ax.set_ylim(-1.3, max(1, len(run.workers)) - 0.4)
    ax.set_title(f"{run.name}: workers (orange: initializing, light: alive) and jobs (blue lines, bottom)", fontsize=9)
    ax.set_xlabel("seconds from the replay's start")
