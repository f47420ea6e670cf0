"""`python -m nas.report`: the README's result tables and figures, generated from the files under `results/`.

Nothing in the README's result sections is typed by hand. A section is delimited by two markers,

    <!-- report:KIND:NAME -->
    ...generated text...
    <!-- /report -->

and regenerated from the file it names:

- `study:NAME`: `results/NAME/study.json` (written by `nas study`): per arm the mean and 95 % t-interval over
  seeds of every ranking metric (a pick study: of the picked arch's benchmark accuracy), the paired difference
  against the baseline arm, and the benchmark's noise ceiling; a figure `results/NAME/<headline metric>.png`.
- `benchmark:NAME`: the `meta.json` of a registered or packaged benchmark (spread of its accuracies, noise
  ceiling, build command and cost).
- `json:PATH`: a table from `results/PATH` (a JSON file with `columns`, `rows` and `command`, e.g. the `make
  search` check).
- `curves:NAME`: a study's per-epoch curves (sampled-path train accuracy, `--rank-every` Kendall tau) from its
  runs' `metrics.csv` copies, and their last values per arm.
- `pada:NAME`: what PA&DA's samplers did in a study's PA&DA arms (path distribution, data coverage, effective
  sample size of q, score spread) per epoch.
- `fewshot:NAME`: a few-shot study's within-leaf ranking: Kendall tau inside each sub-supernet's archs against the
  baseline arm ranking the same groups (from the runs' `ranking.csv` copies).
- `controller:NAME`: an ENAS study's controllers (entropy, reward, cost per arm) and the hidden-state analysis of
  `results/NAME/controller_analysis.json` beside Adam & Lorraine's table.
- `registry:spaces`, `registry:strategies`: the tables of what is registered (`nas.catalog`); a new space or
  strategy appears there by registering.

`python -m nas.report` rewrites README.md in place (atomically); `--check` only reports whether it would change
anything (exit 1 if so), which is what the test suite runs, so tables cannot drift from their results.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .study import mean_interval

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"(<!-- report:(?P<kind>[a-z]+):(?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.S)
METRIC_LABELS = {"kendall_tau": "Kendall tau", "spearman": "Spearman", "precision_at_5pct": "P@top-5%",
                 "precision_at_10pct": "P@top-10%", "top1_regret": "top-1 regret (points)",
                 "picked_acc": "picked arch: benchmark accuracy (%)"}
DIGITS = {"top1_regret": 2, "picked_acc": 2}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _interval(entry: Mapping[str, Any], digits: int = 3) -> str:
    text = _num(entry.get("mean"), digits)
    if entry.get("ci_low") is not None:
        text += f" [{_num(entry['ci_low'], digits)}, {_num(entry['ci_high'], digits)}]"
    return text


def _split_cost(data: Mapping[str, Any]) -> str:
    """A sentence per few-shot arm: the time of its split scores (gradient matching) beside its training time, and
    the units its splits chose, per seed."""
    parts = []
    for arm in data["arms"]:
        runs = [r for r in data["runs"] if r["arm"] == arm and r.get("split_score_seconds") is not None]
        if not runs:
            continue
        score = float(np.median([r["split_score_seconds"] for r in runs]))
        train = float(np.median([r["train_seconds"] for r in runs]))
        parts.append(f"{arm}: split scores {score:.1f} s per run (median), {100 * score / max(train, 1e-9):.0f} % of "
                     f"its {train:.0f} s of training")
    if not parts:
        return ""
    units = [f"{arm} " + ", ".join(f"s{r['seed']} {' / '.join(r['split_units'])}" for r in data["runs"]
                                   if r["arm"] == arm and r.get("split_units"))
             for arm in data["arms"] if any(r["arm"] == arm and r.get("split_units") for r in data["runs"])]
    return (" Cost of the few-shot arms, timed in the study's own runs (two at a time on 2 cores): "
            + "; ".join(parts) + ". Units split (root, then its children, per seed): " + "; ".join(units) + ".")


def study_section(name: str, results: Path, figures: bool = True) -> str:
    """The table of one study: arms x metrics (mean [95 % CI] over seeds), paired differences of the headline
    metric (Kendall tau; a pick study's picked-arch accuracy), the noise ceiling, and the picks of a pick study."""
    data = json.loads((results / name / "study.json").read_text())
    baseline = data["baseline"]
    metrics = data.get("metrics") or [m for m in METRIC_LABELS if m != "picked_acc"]
    headline = data.get("headline", "kendall_tau")
    digits = DIGITS.get(headline, 3)
    lines = [
        "| arm | " + " | ".join(METRIC_LABELS[m] for m in metrics)
        + f" | Δ {METRIC_LABELS[headline]} vs {baseline} (paired) | p |",
        "|---" * (len(metrics) + 3) + "|",
    ]
    for arm, info in data["arms"].items():
        cells = [_interval(info["summary"][m], DIGITS.get(m, 3)) for m in metrics]
        paired = info["paired_vs_baseline"]
        if paired is None:
            diff, p = "(baseline)", ""
        else:
            diff, p = _interval(paired[headline], digits), _num(paired[headline]["p_value"], 3)
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {diff} | {p} |")
    noise = data["benchmark"].get("noise_ceiling")
    seeds = data["seeds"]
    runs = data["runs"]
    steps = {arm: info["steps"] for arm, info in data["arms"].items()}
    text = "\n".join(lines) + "\n\n"
    text += f"Mean [95 % t-interval] over {len(seeds)} seeds ({', '.join(map(str, seeds))})"
    if data["rank"]:
        archs = sorted({r["num_archs"] for r in runs})
        text += (f"; each run ranks {', '.join(map(str, archs))} archs of `{data['benchmark']['name']}`"
                 + (" (one per class of identical networks)" if data["rank"].get("dedup") else "")
                 + f" on the {data['rank'].get('split', 'test')} split")
    if data.get("pick"):
        trained = sum(r["pick"]["source"] == "trained" for r in runs)
        text += (f"; the arch each run picks is judged by `{data['benchmark']['name']}`'s "
                 f"{data['pick']['metric']} ({trained} of {len(runs)} picks are not in the table and were trained "
                 "stand-alone with its recorded protocol and seeds)")
    text += (". Paired differences use the same seed in both arms (same initial weights and data order); p is the "
             "paired t-test's.")
    if noise:
        text += (f" Noise ceiling: two stand-alone training seeds of the benchmark agree at Kendall tau "
                 f"**{_num(noise['kendall_tau'])}** (Spearman {_num(noise['spearman'])}, {noise['archs']} archs)")
        moved = noise.get("mean_abs_diff") if data.get("pick") else None
        text += (f"; one arch's {noise.get('metric', 'test_acc')} differs by {_num(moved, 2)} points between the two "
                 "seeds (mean absolute difference)." if moved is not None else ".")
    same_steps = len({tuple(v) for v in steps.values()}) == 1
    text += (f" Every arm trains the same number of steps ({next(iter(steps.values()))[0]})." if same_steps else
             " Steps per arm: " + ", ".join(f"{a} {v}" for a, v in steps.items()) + ".")
    text += _split_cost(data)
    if data.get("pick"):
        text += "\n\n" + "\n".join(
            f"- {arm}: " + ", ".join(f"s{r['seed']} `{r['pick']['arch']}` {_num(r['metrics']['picked_acc'], 2)}"
                                     for r in runs if r["arm"] == arm)
            for arm in data["arms"])
    text += f"\n\nCommand: `{data['command']}` (spec `{data['spec']}`, git {data['environment']['git_sha']})."
    figure = results / name / f"{headline}.png"
    if figures:  # the link is the same either way, so --check compares text only
        study_figure(data, figure)
    text += f"\n\n![{METRIC_LABELS[headline]} per arm]({_link(figure)})"
    return text + "\n"


def study_figure(data: Mapping[str, Any], path: Path) -> Path:
    """The headline metric of every run per arm (dots), the arm means with their intervals, and (for Kendall tau)
    the noise ceiling."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    headline = data.get("headline", "kendall_tau")
    arms = list(data["arms"])
    fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2, 3.6), dpi=110)
    for i, arm in enumerate(arms):
        values = [r["metrics"][headline] for r in data["runs"] if r["arm"] == arm]
        ax.scatter([i] * len(values), values, s=14, color="0.4", zorder=3)
        s = data["arms"][arm]["summary"][headline]
        if s["ci_low"] is not None:
            ax.errorbar([i + 0.15], [s["mean"]], yerr=[[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]],
                        fmt="o", color="C0", capsize=4, zorder=4)
    noise = data["benchmark"].get("noise_ceiling")
    if noise and headline == "kendall_tau":
        ax.axhline(noise["kendall_tau"], color="C3", ls="--", lw=1, label="noise ceiling (two stand-alone seeds)")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(range(len(arms)), arms, rotation=20)
    ax.set_ylabel(f"{METRIC_LABELS[headline]} ({data['benchmark']['name']})")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, path)


def benchmark_section(name: str, results: Path, figures: bool = True) -> str:
    """Spread, noise ceiling, coverage and cost of a benchmark table, from its meta.json."""
    import nasbench

    bench = nasbench.load(name)
    meta = bench.meta
    plan, cost, spread = meta.get("plan", {}), meta.get("cost", {}), meta.get("spread", {})
    rows = ["| quantity | value |", "|---|---|"]
    rows.append(f"| archs (rows) | {len(bench):,} of {plan.get('space_size', 0):,} |")
    if plan.get("unique"):
        rows.append(f"| networks trained (one per class of identical networks) | {plan['archs_trained']:,} |")
    rows.append(f"| training seeds | {', '.join(map(str, plan.get('seeds', [])))} (all seeds for the first "
                f"{plan.get('multi_seed_archs', 0):,} networks) |")
    for key, label in (("test_acc_over_trained_archs", "test accuracy over the trained networks (%)"),):
        s = spread.get(key)
        if s:
            rows.append(f"| {label}: min / p10 / median / p90 / max | {_num(s['min'], 2)} / {_num(s['p10'], 2)} / "
                        f"{_num(s['median'], 2)} / {_num(s['p90'], 2)} / {_num(s['max'], 2)} |")
            rows.append(f"| ... standard deviation over the trained networks | {_num(s['std'], 2)} points |")
    for key, label in (("noise_ceiling", "test accuracy"), ("noise_ceiling_test_loss", "test loss")):
        noise = meta.get(key)
        if noise:
            rows.append(f"| seed-to-seed Kendall tau ({label}, {noise['archs']} networks) | "
                        f"**{_num(noise['kendall_tau'])}** (Spearman {_num(noise['spearman'])}, mean absolute "
                        f"difference {_num(noise['mean_abs_diff'], 3)}) |")
    training = meta.get("training", {})
    rows.append(f"| protocol | C={training.get('C')}, N={training.get('N')}, {training.get('epochs')} epochs, batch "
                f"{training.get('batch_size')}, SGD {training.get('lr')} Nesterov cosine, wd "
                f"{training.get('weight_decay')} |")
    if cost:
        hours = cost.get("train_seconds_total", 0) / 3600
        rows.append(f"| cost | {_num(cost.get('seconds_per_training_median'), 1)} s per training (median, "
                    f"{cost.get('workers')} worker(s) of one thread), {_num(hours, 2)} h of training in all |")
    text = "\n".join(rows) + "\n"
    if meta.get("command"):
        text += f"\nBuilt with `{meta['command']}` (torch {meta.get('environment', {}).get('torch')})."
        text += f" Packed with `nas bench pack`; loads offline as `nasbench.load(\"{name}\")`.\n"
    return text


def json_section(name: str, results: Path, figures: bool = True) -> str:
    """A generic table: `results/<name>` holds `columns` (list of [key, header]), `rows` and `command`."""
    data = json.loads((results / name).read_text())
    columns = data["columns"]
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|---" * len(columns) + "|"]
    for row in data["rows"]:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            cells.append(_num(value, data.get("digits", {}).get(key, 3)) if isinstance(value, float) else
                         str(value if value is not None else "n/a"))
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if data.get("note"):
        text += f"\n{data['note']}\n"
    if data.get("command"):
        text += f"\nCommand: `{data['command']}`.\n"
    return text


def _run_rows(results: Path, name: str) -> dict[tuple[str, int], list[dict[str, str]]]:
    """The per-epoch rows of every run of a study (`results/NAME/runs/<arm>-s<seed>.csv`)."""
    import csv

    data = json.loads((results / name / "study.json").read_text())
    out = {}
    for run in data["runs"]:
        path = results / name / "runs" / f"{run['arm']}-s{run['seed']}.csv"
        with open(path, newline="") as fh:
            out[(run["arm"], run["seed"])] = list(csv.DictReader(fh))
    return out


def _series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [e for e, _ in pairs], [v for _, v in pairs]


def curves_section(name: str, results: Path, figures: bool = True) -> str:
    """Training curves of a study's runs: mean sampled-path train accuracy and the `--rank-every` Kendall tau
    over epochs per arm (figure), and the final values per arm (table, mean over seeds)."""
    data = json.loads((results / name / "study.json").read_text())
    rows = _run_rows(results, name)
    arms = list(data["arms"])
    lines = ["| arm | epochs | steps | train acc., last epoch (%) | Kendall tau, last epoch (rank-every sample) | "
             "training time (s, median) |", "|---|---|---|---|---|---|"]
    for arm in arms:
        runs = [rows[(arm, s)] for s in data["seeds"] if (arm, s) in rows]
        acc = [float(r[-1]["train_acc"]) for r in runs]
        taus = [_series(r, "kendall_tau")[1][-1] for r in runs if _series(r, "kendall_tau")[1]]
        epochs = int(runs[0][-1]["epoch"])
        lines.append(f"| {arm} | {epochs} | {data['arms'][arm]['steps'][0]} | {_interval(mean_interval(acc), 1)} | "
                     f"{_interval(mean_interval(taus))} | {_num(data['arms'][arm]['train_seconds_median'], 0)} |")
    figure = results / name / "curves.png"
    if figures:
        from .plots import pyplot, save_figure

        plt = pyplot()
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
        for i, arm in enumerate(arms):
            for j, seed in enumerate(data["seeds"]):
                if (arm, seed) not in rows:
                    continue
                label = arm if j == 0 else None
                left.plot(*_series(rows[(arm, seed)], "train_acc"), color=f"C{i}", alpha=0.6, lw=1, label=label)
                right.plot(*_series(rows[(arm, seed)], "kendall_tau"), color=f"C{i}", alpha=0.6, lw=1, marker=".",
                           label=label)
        left.set(xlabel="epoch", ylabel="train accuracy of the sampled paths (%)")
        right.set(xlabel="epoch", ylabel=f"Kendall tau vs {data['rank']['benchmark']} (rank-every sample)")
        noise = data["benchmark"].get("noise_ceiling")
        if noise:
            right.axhline(noise["kendall_tau"], color="k", ls="--", lw=1, label="noise ceiling")
        for ax in (left, right):
            ax.grid(alpha=0.3)
        right.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, figure)
    return "\n".join(lines) + f"\n\n![training curves]({_link(figure)})\n\nCommand: `{data['command']}`.\n"


def pada_section(name: str, results: Path, figures: bool = True) -> str:
    """What PA&DA's samplers did in a study's PA&DA runs, per epoch from their metrics.csv: the path distribution
    (probability of each op), the share of training samples drawn, the effective sample size of q and the spread
    of the per-sample scores."""
    data = json.loads((results / name / "study.json").read_text())
    rows = _run_rows(results, name)
    pada_arms = [a for a, info in data["arms"].items() if any("strategy.name=pada" in o for o in info["overrides"])]
    lines = ["| arm | p(none) / p(skip) / p(conv1x1) / p(conv3x3) / p(pool), last epoch | data coverage, last epoch | "
             "q effective sample size / N | score CV |", "|---|---|---|---|---|"]
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    for arm in pada_arms:
        last = [rows[(arm, s)][-1] for s in data["seeds"] if (arm, s) in rows]

        def mean(key: str, last: list[dict[str, str]] = last) -> float | None:
            values = [float(r[key]) for r in last if r.get(key) not in (None, "")]
            return sum(values) / len(values) if values else None

        probs = " / ".join(_num(mean(f"p_{op}"), 3) for op in ops)
        lines.append(f"| {arm} | {probs} | {_num(mean('data_coverage'), 3)} | {_num(mean('q_ess_fraction'), 3)} | "
                     f"{_num(mean('score_cv'), 2)} |")
    figure = results / name / "pada.png"
    if figures and pada_arms:
        from .plots import pyplot, save_figure

        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
        seed = data["seeds"][0]
        for i, arm in enumerate(pada_arms):
            run = rows[(arm, seed)]
            for k, op in enumerate(ops):
                epochs, values = _series(run, f"p_{op}")
                if values:
                    axes[0].plot(epochs, values, color=f"C{k}", ls=("-", "--", ":")[i % 3],
                                 label=f"{op} ({arm})" if i < 2 else None)
            for key, ax in (("data_coverage", axes[1]), ("q_ess_fraction", axes[2])):
                epochs, values = _series(run, key)
                ax.plot(epochs, values, color=f"C{i}", label=arm)
        axes[0].set(xlabel="epoch", ylabel="path probability per op (all edges)", title=f"seed {seed}")
        axes[1].set(xlabel="epoch", ylabel="share of training samples drawn")
        axes[2].set(xlabel="epoch", ylabel="effective sample size of q / N")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        save_figure(fig, figure)
    return "\n".join(lines) + f"\n\n![PA&DA's samplers over epochs]({_link(figure)})\n"


def _link(path: Path) -> str:
    resolved = path.resolve()
    return resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(path)


def registry_section(name: str, results: Path, figures: bool = True) -> str:
    """`registry:spaces` / `registry:strategies`: the table of what is registered (`nas.catalog`), so a new
    space or strategy gets its README row by registering."""
    from . import catalog

    tables = {"spaces": catalog.spaces_table, "strategies": catalog.strategies_table}
    if name not in tables:
        raise ValueError(f"unknown registry table {name!r}; accepted: {', '.join(tables)}")
    return tables[name]() + "\n"


def _ranking_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _within_groups_tau(rows: list[dict[str, str]], groups: Mapping[str, str]) -> float:
    """Kendall tau inside each group of archs (`arch -> group`), averaged with the groups' sizes as weights."""
    import nasbench

    by_group: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["arch"] in groups and row["true_acc"] != "":
            by_group.setdefault(groups[row["arch"]], []).append((float(row["supernet_score"]), float(row["true_acc"])))
    taus, sizes = [], []
    for pairs in by_group.values():
        if len(pairs) >= 3:
            score, truth = zip(*pairs)
            tau = nasbench.kendall_tau(np.array(score), np.array(truth))
            if not math.isnan(tau):
                taus.append(tau)
                sizes.append(len(pairs))
    return float(np.average(taus, weights=sizes)) if taus else float("nan")


def fewshot_section(name: str, results: Path, figures: bool = True) -> str:
    """`fewshot:NAME`: how a few-shot study's supernets rank inside their own sub-supernets. Per few-shot run, the
    Kendall tau within each leaf's archs (weighted by the leaf's size), beside the baseline run of the same seed
    ranked on the same groups of archs; the gap between the study table's global tau and this one is what scoring
    archs with different sub-supernets costs (their scores are not on one scale)."""
    from .study import paired_difference

    data = json.loads((results / name / "study.json").read_text())
    runs_dir = results / name / "runs"
    baseline = data["baseline"]
    lines = ["| arm | Kendall tau within its leaves | the same groups, ranked by " + baseline
             + " | Δ (paired) | p | global Kendall tau |", "|---|---|---|---|---|---|"]
    for arm in data["arms"]:
        runs = [r for r in data["runs"] if r["arm"] == arm and r.get("split_units")]
        if not runs:
            continue
        own, base, overall = {}, {}, []
        for r in runs:
            rows = _ranking_rows(runs_dir / f"{arm}-s{r['seed']}.ranking.csv")
            groups = {row["arch"]: row["sub_supernet"] for row in rows}
            own[r["seed"]] = _within_groups_tau(rows, groups)
            base[r["seed"]] = _within_groups_tau(_ranking_rows(runs_dir / f"{baseline}-s{r['seed']}.ranking.csv"),
                                                 groups)
            overall.append(r["metrics"]["kendall_tau"])
        diff = paired_difference(own, base)
        lines.append(f"| {arm} | {_interval(mean_interval(list(own.values())))} | "
                     f"{_interval(mean_interval(list(base.values())))} | {_interval(diff)} | {_num(diff['p_value'])} | "
                     f"{_interval(mean_interval(overall))} |")
    return ("\n".join(lines) + "\n\nMean [95 % t-interval] over seeds; within-leaf taus are averaged over a run's "
            "leaves with their sizes as weights, and the baseline column ranks the same groups of archs with the "
            f"baseline run of the same seed (one supernet for all of them). Files: `results/{name}/runs/"
            "*.ranking.csv` (`nas rank` of every run; the few-shot ones name the leaf of every arch).\n")


def controller_section(name: str, results: Path, figures: bool = True) -> str:
    """`controller:NAME`: the ENAS controllers of a study. What they did per arm (the last epoch's policy entropy
    against the uniform policy's, the mean reward accuracy, the controller phase's seconds per epoch, from the runs'
    `metrics.csv` copies), then the hidden-state analysis of `results/NAME/controller_analysis.json` (`nas analyze
    controller ... --out`) laid out as Adam & Lorraine's table, their values beside it."""
    from .analyze import MEASURE_LABELS, MEASURES, PAPER_TABLE

    rows = _run_rows(results, name)
    arms = sorted({arm for arm, _ in rows if any("controller_entropy" in r for r in rows[(arm, _)])})
    lines = ["| arm | policy entropy, last epoch (nats) | reward accuracy, last epoch | controller phase (s / epoch) "
             "| shared phase (s / epoch) |", "|---|---|---|---|---|"]
    for arm in arms:
        runs = [r for (a, _), r in sorted(rows.items()) if a == arm]
        last = [r[-1] for r in runs]
        entropy = mean_interval([float(r["controller_entropy"]) for r in last])
        accuracy = mean_interval([100 * float(r["controller_accuracy"]) for r in last])
        phase = float(np.median([float(x["controller_seconds"]) for r in runs for x in r]))
        shared = float(np.median([float(x["epoch_time_s"]) - float(x["controller_seconds"]) for r in runs for x in r]))
        lines.append(f"| {arm} | {_interval(entropy, 2)} | {_interval(accuracy, 1)} % | {phase:.1f} | {shared:.1f} |")
    data = json.loads((results / name / "controller_analysis.json").read_text())
    header = "| controller | " + " | ".join(MEASURE_LABELS[m] for m in MEASURES) + " | distinct archs | runs |"
    table = [header, "|---" * (len(MEASURES) + 3) + "|"]
    for key, entry in data["table"].items():
        cells = [_interval(entry[m]) for m in MEASURES]
        table.append(f"| {key} | " + " | ".join(cells) + f" | {entry['distinct_archs']:.0f} of {data['samples']} "
                     f"| {entry['runs']} |")
    for kind, values in PAPER_TABLE.items():
        table.append(f"| paper (PTB): {kind} | " + " | ".join(_num(values[m]) for m in MEASURES) + " | | |")
    pairs = sorted({r["correlations"]["l2"]["abs_perf_diff"]["pairs"] for r in data["runs"]})
    command = data.get("command") or "nas analyze controller"
    runs = [r["run"] for r in data["runs"]]
    if runs and all(run in command for run in runs):  # the run directories, named once instead of listed
        for run in dict.fromkeys(runs):
            command = command.replace(f" {run}", "", 1)
        command = command.replace("nas analyze controller", f"nas analyze controller <{len(set(runs))} run "
                                  "directories>", 1)
    truth = data["runs"][0].get("truth")
    text = "\n".join(lines) + "\n\nThe uniform policy's entropy over NB201's 6 edges is 6 ln 5 = 9.66 nats.\n\n"
    text += "\n".join(table) + "\n\n"
    text += (f"Spearman correlation between the L2 distance of two archs' final hidden states and each measure, over "
             f"the {data['samples'] * (data['samples'] - 1) // 2:,} pairs of {data['samples']} archs drawn from each "
             "controller (mean [95 % t-interval] over runs); `random` is each run's controller before its first "
             "step; `read` is the hidden state after the LSTM has read the last decision, `emit` the state that "
             "emitted it (it has read all decisions but the last). A controller that remembers its decisions shows "
             "negative, negative, positive, positive. The "
             "accuracy differences count only pairs whose archs both have a class in the benchmark "
             f"({pairs[0]} to {pairs[-1]} pairs per controller"
             + (f", `{truth['benchmark']}` {truth['dataset']} {truth['metric']}" if truth else "") + ").")
    text += f" Command: `{command}`.\n"
    figure = results / name / "controller_analysis.png"
    if figures:
        controller_figure(data, figure)
    return text + f"\n![hidden-state correlations per controller]({_link(figure)})\n"


def controller_figure(data: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars: per measure, the mean Spearman (with its interval) of every controller of the analysis, and
    the paper's values as hollow bars."""
    from .analyze import MEASURE_LABELS, MEASURES, PAPER_TABLE
    from .plots import pyplot, save_figure

    plt = pyplot()
    groups = [k for k, v in data["table"].items() if v.get("state", "read") == "read"]
    groups += [f"paper: {k}" for k in PAPER_TABLE]
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(9, 3.8), dpi=110)
    for g, key in enumerate(groups):
        xs = [m + (g - (len(groups) - 1) / 2) * width for m in range(len(MEASURES))]
        if key.startswith("paper: "):
            values = [PAPER_TABLE[key[7:]][m] for m in MEASURES]
            ax.bar(xs, values, width, fill=False, edgecolor=f"C{g}", hatch="//", label=key)
            continue
        entry = data["table"][key]
        means = [entry[m]["mean"] if entry[m]["mean"] is not None else np.nan for m in MEASURES]
        errors = [[(e["mean"] - e["ci_low"]) if e["ci_low"] is not None else 0 for e in map(entry.get, MEASURES)],
                  [(e["ci_high"] - e["mean"]) if e["ci_high"] is not None else 0 for e in map(entry.get, MEASURES)]]
        ax.bar(xs, means, width, yerr=errors, capsize=2, color=f"C{g}", label=key)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(MEASURES)), [MEASURE_LABELS[m] for m in MEASURES])
    ax.set_ylabel("Spearman with hidden-state L2 distance\n(state after reading the last decision)", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, path)


def _millions(value: int) -> str:
    return f"{value / 1e6:.1f}M"


def counts_section(name: str, results: Path, figures: bool = True) -> str:
    """`counts:transformer`: the Transformer space's parameter counts (`results/transformer_counts.json`, written by
    benchmarks/transformer_counts.py) against Hugging Face's BertModel, the teacher reproduction, and every
    sub-space's range from real slice shapes beside the reference's formula and its yaml comments."""
    data = json.loads((results / f"{name}_counts.json").read_text())
    ours, hf = data["ours"], data["hugging_face"]
    lines = ["| BERT-base | ours (real shapes) | `BertModel(BertConfig())` |", "|---|---|---|"]
    for key, label in (("total", "total"), ("encoder", "encoder"), ("embeddings", "embeddings"),
                       ("pooler", "pooler")):
        mine = ours["space.params"] if key == "total" else ours[key]
        lines.append(f"| {label} | {mine:,} | {hf[key]:,} |" if hf else f"| {label} | {mine:,} | n/a |")
    text = "\n".join(lines) + "\n"
    diff = data.get("reproduction_max_abs_diff")
    if diff:
        text += ("\nA SuperLM initialised from a random `BertModel(BertConfig())` reproduces it with its largest "
                 "student: the largest absolute differences are " + ", ".join(f"{k} {v:.1e}" for k, v in diff.items())
                 + " (float32).\n")
    lines = ["| sub-space | students | params (real shapes) | params (reference formula) | yaml comment | "
             "FLOPs, 128 tokens | smallest / largest |", "|---|---|---|---|---|---|---|"]
    for row in data["subspaces"]:
        lines.append(f"| {row['subspace']} | {row['students']:,} | {_millions(row['params_min'])} - "
                     f"{_millions(row['params_max'])} | {_millions(row['formula_min'])} - "
                     f"{_millions(row['formula_max'])} | {row['yaml_comment'] or '-'} | "
                     f"{row['flops_min'] / 1e9:.2f}G - {row['flops_max'] / 1e9:.2f}G | {row['smallest']} / "
                     f"{row['largest']} |")
    return text + "\n" + "\n".join(lines) + f"\n\nCommand: `{data['command']}`.\n"


def _ci(entry: Mapping[str, Any], digits: int = 3) -> str:
    """A bootstrap entry of `nasbench.ranking_report` (`value`, `ci_low`, `ci_high`) as `v [lo, hi]`."""
    return _interval({**entry, "mean": entry.get("value")}, digits)


def autodistil_section(name: str, results: Path, figures: bool = True) -> str:
    """`autodistil:NAME`: an AutoDistil run on text (`results/NAME/`: its metrics.csv, arch.json, summary.json and
    the `nas analyze students` result students.json): the held-out loss of every sub-space's largest and smallest
    student before and after training, the picks, and the inherited-vs-stand-alone ranking of sampled students."""
    folder = results / name
    with open(folder / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    arch = json.loads((folder / "arch.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    lines = ["| sub-space | steps | largest: before -> after | smallest: before -> after | pick | pick's loss | "
             "params |", "|---|---|---|---|---|---|---|"]
    picks = {p["subspace"]: p for p in arch["picks"]}
    for sub in dict.fromkeys(r["subspace"] for r in rows):
        mine = [r for r in rows if r["subspace"] == sub]
        first, last = mine[0], mine[-1]
        pick = picks.get(sub, {})
        lines.append(f"| {sub} | {last['step']} | {float(first['heldout_largest']):.4f} -> "
                     f"{float(last['heldout_largest']):.4f} | {float(first['heldout_smallest']):.4f} -> "
                     f"{float(last['heldout_smallest']):.4f} | {pick.get('arch', '-')} | "
                     f"{_num(pick.get('heldout_loss'), 4)} | {pick.get('params', 0):,} |")
    teacher = summary["teacher"]
    text = (f"Teacher: {teacher['shape']['layers']} layers, hidden {teacher['shape']['hidden']}, "
            f"{teacher['shape']['heads']} heads of {teacher['shape']['head_size']} ({teacher['source']}"
            + (f"; held-out masked-LM accuracy {teacher['mlm']['heldout_mlm_acc']:.1f}%" if "mlm" in teacher else "")
            + f"). Text: {summary['data']['source']}, {summary['data']['tokens']:,} tokens.\n\n"
            + "\n".join(lines) + "\n")
    if figures:
        from . import plots

        plots.distillation_curves(folder / "distillation.png", [
            {**r, "step": int(r["step"]), "heldout_largest": float(r["heldout_largest"]),
             "heldout_smallest": float(r["heldout_smallest"])} for r in rows])
    text += f"\n![held-out distillation loss]({_link(folder / 'distillation.png')})\n"
    students = folder / "students.json"
    if students.is_file():
        data = json.loads(students.read_text())
        lines = ["| students | Kendall tau | Spearman |", "|---|---|---|",
                 f"| all {data['all']['n']} | {_ci(data['all']['kendall_tau'])} | "
                 f"{_ci(data['all']['spearman'])} |"]
        for sub, part in data["within"].items():
            lines.append(f"| within {sub} ({part['n']}) | {_ci(part['kendall_tau'])} | "
                         f"{_ci(part['spearman'])} |")
        text += ("\nRanking consistency of the task-agnostic search: held-out loss with inherited weights against "
                 f"the loss after training each student stand-alone ({data['budget']['epochs']} epochs of the run, "
                 "from the teacher's slice), 95 % bootstrap intervals:\n\n" + "\n".join(lines) + "\n")
        if (folder / "students.png").is_file():
            text += f"\n![inherited vs stand-alone]({_link(folder / 'students.png')})\n"
    commands = [line for line in (folder / "COMMANDS").read_text().splitlines() if line.strip()]
    return text + "\nCommands: " + "; ".join(f"`{c}`" for c in commands) + ".\n"


SECTIONS: dict[str, Callable[[str, Path, bool], str]] = {
    "study": study_section, "benchmark": benchmark_section, "json": json_section, "curves": curves_section,
    "pada": pada_section, "registry": registry_section, "fewshot": fewshot_section, "controller": controller_section,
    "counts": counts_section, "autodistil": autodistil_section,
}


def render(text: str, results: Path, figures: bool = True) -> str:
    """README text with every marked section regenerated."""
    def replace(match: re.Match) -> str:
        kind, name = match["kind"], match["name"]
        if kind not in SECTIONS:
            raise ValueError(f"unknown report section kind {kind!r}; accepted: {', '.join(SECTIONS)}")
        return match.group(1) + SECTIONS[kind](name, results, figures) + match.group(5)

    return MARKER.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nas.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--results", default=str(ROOT / "results"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs from its results")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    current = readme.read_text()
    try:
        updated = render(current, Path(args.results), figures=not args.check)
    except (OSError, ValueError, KeyError) as exc:
        print(f"nas.report: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != current:
            print(f"{readme} differs from what results/ generates; run python -m nas.report", file=sys.stderr)
            return 1
        return 0
    if updated != current:
        from .io import atomic_write_text

        atomic_write_text(readme, updated)
        print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
