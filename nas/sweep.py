"""Sweep files of `nas tune`: a base experiment, the config keys that vary, and how Ray Tune runs the trials.

A sweep file is YAML (safe loader) with these keys; only `base` and `params` are required:

    name: strategies_nb201            # experiment name: the folder under storage_path (default: the file's stem)
    description: ...                  # free text
    base:                             # the experiment every trial starts from, as `nas search` builds it
      config: [digits_quick]          #   --config files or presets (a list or one name), later wins
      set: {train.epochs: 10}         #   --set overrides (dotted keys), after the files
    params:                           # what varies, by dotted config key:
      strategy.name: [uniform, pada]  #   a list is a grid; or {grid: [...]}, {choice: [...]},
      seed: [0, 1, 2]                 #   {uniform: [lo, hi]}, {loguniform: [lo, hi]}, {randint: [lo, hi]}
    num_samples: 1                    # repeats of the grid (random params are drawn anew for each)
    resources: {cpus: 1, gpus: 0}     # per trial; `custom: {NAME: amount}` asks for custom Ray resources
    max_concurrent_trials: null       # null: as many as the resources allow
    storage_path: runs/tune           # local folder, NFS mount or s3:// / gs:// URI (shared by all nodes)
    metric: best_score                # what names the best trial (its last reported value) ...
    mode: max                         # ... and whether larger (max) or smaller (min) is better
    failure:
      max_failures: 2                 # retries of a failed trial, from its last checkpoint (-1: no limit)
      on_resume: resume               # --resume: errored trials resume | restart from scratch | skip
    inject_failure: {after_epoch: 2}  # every trial fails once after that epoch (checks a cluster's recovery)

Every value is validated when the file is read; the first bad one stops the command with one sentence that
names the key, the value and what is accepted. Every grid combination is resolved through `nas.config`,
so a bad config key or value in `base` or `params` is refused before Ray starts. Config files named in
`base.config` are read here, on the driver, so trials on other nodes do not need them.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as cfg
from .errors import UserError

SWEEP_KEYS = ("name", "description", "base", "params", "num_samples", "resources", "max_concurrent_trials",
              "storage_path", "metric", "mode", "failure", "inject_failure")
BASE_KEYS = ("config", "set")
RESOURCE_KEYS = ("cpus", "gpus", "custom")
FAILURE_KEYS = ("max_failures", "on_resume")
ON_RESUME = ("resume", "restart", "skip")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
DEFAULT_STORAGE = "runs/tune"
_VALIDATE_COMBINATIONS = 512  # grids larger than this are checked key by key instead of combination by combination


@dataclass(frozen=True)
class Param:
    """One varied config key: `kind` is grid, choice, uniform, loguniform or randint."""

    key: str
    kind: str
    values: tuple[Any, ...]

    def representatives(self) -> list[Any]:
        """Values that stand for the whole range when the config is validated."""
        if self.kind in ("grid", "choice"):
            return list(self.values)
        low, high = self.values
        return [low, high - 1] if self.kind == "randint" else [low, high]


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpus: float = 1.0
    gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)

    def as_ray(self) -> dict[str, float]:
        """The resource request in `tune.with_resources` form."""
        return {"cpu": self.cpus, "gpu": self.gpus, **self.custom}


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    name: str
    description: str
    base_overrides: tuple[str, ...]
    params: tuple[Param, ...]
    num_samples: int
    resources: Resources
    max_concurrent_trials: int | None
    storage_path: str
    metric: str
    mode: str
    max_failures: int
    on_resume: str
    fail_after_epoch: int | None
    source: str = ""

    @property
    def remote_storage(self) -> bool:
        """True when the storage is a URI (s3://, gs://, ...) rather than a local or mounted folder."""
        return "://" in self.storage_path

    @property
    def total_trials(self) -> int:
        """Trials the sweep runs: the grid's combinations times num_samples (random params add none)."""
        return self.num_samples * math.prod(len(p.values) for p in self.params if p.kind == "grid")

    @property
    def experiment_path(self) -> str:
        """Where Ray Tune keeps the experiment: `storage_path/name`."""
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    @property
    def results_dir(self) -> Path:
        """The local folder that receives results.csv, results.png, best.json and events.jsonl."""
        if self.remote_storage:
            return Path(DEFAULT_STORAGE).resolve() / self.name
        return Path(self.experiment_path)

    def trial_overrides(self, values: Mapping[str, Any]) -> list[str]:
        """`--set` items of one trial: the base, then its parameter values."""
        return [*self.base_overrides, *(_override(k, v) for k, v in values.items())]

    def resolve(self, values: Mapping[str, Any]) -> dict:
        """The validated `nas search` config of the trial with these parameter values."""
        return cfg.resolve([], {}, self.trial_overrides(values))

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a sweep and its --resume (saved as sweep.json)."""
        return {"name": self.name, "base": list(self.base_overrides),
                "params": [[p.key, p.kind, list(p.values)] for p in self.params], "num_samples": self.num_samples}


def _override(key: str, value: Any) -> str:
    """A `--set` item whose value reads back (as YAML) exactly as `value` (JSON is YAML's flow style)."""
    return f"{key}={json.dumps(value)}"


def find_sweep_file(name: str) -> Path:
    """A path, or the name of a sweep shipped under configs/tune/ (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = cfg.presets_dir() / "tune"
    for candidate in (shipped / name, shipped / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(shipped_sweeps()) or "none"
    raise UserError(f"sweep {name!r} is neither a file nor a shipped sweep; shipped sweeps: {known}")


def shipped_sweeps() -> list[str]:
    """Names of the sweeps under configs/tune/."""
    return sorted(p.stem for p in (cfg.presets_dir() / "tune").glob("*.yaml"))


def load_sweep(name_or_path: str) -> Sweep:
    """Read and validate a sweep file (a path or a shipped sweep's name)."""
    path = find_sweep_file(name_or_path)
    raw = cfg.load_yaml(path)
    return parse_sweep(raw, default_name=path.stem, source=str(path))


def _unknown(key: str, accepted: tuple[str, ...], where: str) -> UserError:
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UserError(f"unknown sweep key {key!r}{hint} {where}; accepted: {', '.join(accepted)}")


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UserError(f"sweep key {key} must be a mapping, got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(raw: Mapping[str, Any], key: str, default: int | None, low: int, nullable: bool = False,
                  where: str = "") -> int | None:
    value = raw.get(key, default)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        accepted = f"an integer >= {low}" + (" or null" if nullable else "")
        raise UserError(f"sweep key {where}{key}={value!r} is not valid; accepted: {accepted}")
    return value


def parse_sweep(raw: Mapping[str, Any], default_name: str = "sweep", source: str = "") -> Sweep:
    """Validate the content of a sweep file and resolve every trial's config once; see the module docstring."""
    for key in raw:
        if key not in SWEEP_KEYS:
            raise _unknown(str(key), SWEEP_KEYS, "at the top of the sweep file")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"sweep key name={name!r} is not valid; accepted: letters, digits, '_', '.', '-'")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"sweep key description must be text, got {description!r}")
    if "base" not in raw or raw["base"] is None:
        raise UserError("the sweep file has no base; give base.config (presets or files) and/or base.set "
                        "(dotted keys), the experiment every trial starts from")
    base_overrides = _base_overrides(_mapping(raw["base"], "base"))
    params = _params(raw.get("params"))
    num_samples = _int_at_least(raw, "num_samples", 1, 1)
    max_concurrent = _int_at_least(raw, "max_concurrent_trials", None, 1, nullable=True)
    resources = _resources(raw.get("resources", {}))
    storage = raw.get("storage_path", DEFAULT_STORAGE)
    if not isinstance(storage, str) or not storage.strip():
        raise UserError(f"sweep key storage_path={storage!r} is not valid; accepted: a folder path or a URI")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    failure = _mapping(raw.get("failure", {}), "failure")
    for key in failure:
        if key not in FAILURE_KEYS:
            raise _unknown(str(key), FAILURE_KEYS, "in failure")
    max_failures = _int_at_least(failure, "max_failures", 2, -1, where="failure.")
    on_resume = failure.get("on_resume", "resume")
    if on_resume not in ON_RESUME:
        raise UserError(f"sweep key failure.on_resume={on_resume!r} is not valid; accepted: {', '.join(ON_RESUME)}")
    injected = _mapping(raw.get("inject_failure", {}), "inject_failure")
    for key in injected:
        if key != "after_epoch":
            raise _unknown(str(key), ("after_epoch",), "in inject_failure")
    fail_after = _int_at_least(injected, "after_epoch", None, 1, nullable=True, where="inject_failure.")

    sweep = Sweep(name=name, description=description, base_overrides=base_overrides, params=params,
                  num_samples=num_samples, resources=resources, max_concurrent_trials=max_concurrent,
                  storage_path=storage, metric="", mode="max", max_failures=max_failures, on_resume=on_resume,
                  fail_after_epoch=fail_after, source=source)
    configs = _validate_trials(sweep)
    metric, mode = raw.get("metric"), raw.get("mode")
    if metric is None:
        metric, default_mode = default_metric(configs[0])
        mode = default_mode if mode is None else mode
    if not isinstance(metric, str) or not metric:
        raise UserError(f"sweep key metric={metric!r} is not valid; accepted: the name of a reported metric, "
                        "e.g. best_score, kendall_tau, train_loss")
    mode = "max" if mode is None else mode
    if mode not in ("min", "max"):
        raise UserError(f"sweep key mode={mode!r} is not valid; accepted: min, max")
    if fail_after is not None and fail_after >= min(c["train"]["epochs"] for c in configs):
        raise UserError(f"sweep key inject_failure.after_epoch={fail_after} is not before the last epoch; accepted: "
                        f"an epoch < train.epochs={min(c['train']['epochs'] for c in configs)}")
    return dataclasses.replace(sweep, metric=metric, mode=mode)


def default_metric(config: Mapping[str, Any]) -> tuple[str, str]:
    """Kendall tau when a ranking benchmark is monitored, else the chosen arch's score, else the training loss."""
    if config["rank"]["every"] > 0:
        return "kendall_tau", "max"
    if config["search"]["method"] != "none":
        import strategies

        text = strategies.strategy_class(config["strategy"]["name"]).inputs == "text"
        return "best_score", "min" if text else "max"  # a text search's score is its held-out distillation loss
    return "train_loss", "min"


def _base_overrides(base: Mapping[str, Any]) -> tuple[str, ...]:
    for key in base:
        if key not in BASE_KEYS:
            raise _unknown(str(key), BASE_KEYS, "in base")
    files = base.get("config", [])
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise UserError(f"sweep key base.config={files!r} is not valid; accepted: a preset or file name, or a list")
    overrides: list[str] = []
    for name in files:
        for key, value in _flatten(cfg.load_yaml(cfg.find_config_file(name))).items():
            overrides.append(_override(key, _absolute_paths(key, value)))
    sets = base.get("set", {}) or {}
    if not isinstance(sets, Mapping):
        raise UserError(f"sweep key base.set must map dotted config keys to values, got {sets!r}")
    for key, value in _flatten(sets).items():
        overrides.append(_override(key, _absolute_paths(key, value)))
    return tuple(overrides)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, dotted + "."))
        elif not isinstance(value, Mapping):
            out[dotted] = value
    return out


def _absolute_paths(key: str, value: Any) -> Any:
    """Trials run in their own working directories (and on other nodes), so relative paths are made absolute
    here; `~/...` data folders stay as they are (each node expands its own home); a registered benchmark name
    stays a name."""
    if not isinstance(value, str) or not value:
        return value
    if key == "data.data_dir":
        return value if value.startswith("~") else str(Path(value).resolve())
    if key == "rank.benchmark":
        import nasbench

        if value not in nasbench.names():
            return str(Path(value).expanduser().resolve())
    return value


def _params(raw: Any) -> tuple[Param, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise UserError("the sweep file has no params; name at least one config key to vary, e.g. "
                        "params: {seed: [0, 1, 2]}")
    params = []
    for key, spec in raw.items():
        if not isinstance(key, str) or not key:
            raise UserError(f"sweep params key {key!r} is not valid; accepted: a dotted config key such as train.lr")
        where = f"params.{key}"
        if isinstance(spec, list):
            kind, values = "grid", spec
        elif isinstance(spec, Mapping) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
            kind, values = next(iter(spec.items()))
        else:
            raise UserError(f"sweep key {where}={spec!r} is not valid; accepted: a list of values (a grid) or one of "
                            f"{{{', '.join(DISTRIBUTIONS)}: ...}}; fixed values belong in base.set")
        if not isinstance(values, list) or not values:
            raise UserError(f"sweep key {where}: {kind} takes a non-empty list, got {values!r}")
        if kind in ("uniform", "loguniform", "randint"):
            ok = len(values) == 2 and all(_number(v) for v in values) and values[0] < values[1]
            ok = ok and (kind != "loguniform" or values[0] > 0)
            ok = ok and (kind != "randint" or all(isinstance(v, int) for v in values))
            if not ok:
                bounds = {"uniform": "two numbers", "loguniform": "two positive numbers",
                          "randint": "two integers (high excluded)"}[kind]
                raise UserError(f"sweep key {where}: {kind} takes [low, high] with low < high, {bounds}; "
                                f"got {values!r}")
        elif len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise UserError(f"sweep key {where}: {kind} lists a value twice: {values!r}")
        params.append(Param(key, kind, tuple(values)))
    return tuple(params)


def _resources(raw: Any) -> Resources:
    res = _mapping(raw, "resources")
    for key in res:
        if key not in RESOURCE_KEYS:
            raise _unknown(str(key), RESOURCE_KEYS, "in resources")
    cpus, gpus = res.get("cpus", 1), res.get("gpus", 0)
    if not _number(cpus) or cpus <= 0:
        raise UserError(f"sweep key resources.cpus={cpus!r} is not valid; accepted: a number > 0 (CPUs per trial)")
    if not _number(gpus) or gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise UserError(f"sweep key resources.gpus={gpus!r} is not valid; accepted: 0, a fraction below 1 (trials "
                        "share a GPU) or a whole number of GPUs per trial")
    custom = _mapping(res.get("custom", {}) or {}, "resources.custom")
    for name, amount in custom.items():
        if not isinstance(name, str) or name.upper() in ("CPU", "GPU", "MEMORY", "OBJECT_STORE_MEMORY"):
            raise UserError(f"sweep key resources.custom.{name}: use resources.cpus / resources.gpus for CPUs and "
                            "GPUs; custom names a resource given to `ray start --resources`")
        if not _number(amount) or amount <= 0:
            raise UserError(f"sweep key resources.custom.{name}={amount!r} is not valid; accepted: a number > 0")
    return Resources(float(cpus), float(gpus), {str(k): float(v) for k, v in custom.items()})


def _validate_trials(sweep: Sweep) -> list[dict]:
    """Resolve the config of every grid combination (key by key for huge grids); returns the configs."""
    reps = [p.representatives() for p in sweep.params]
    total = math.prod(len(r) for r in reps)
    if total <= _VALIDATE_COMBINATIONS:
        combos = [dict(zip([p.key for p in sweep.params], values)) for values in itertools.product(*reps)]
    else:
        first = {p.key: r[0] for p, r in zip(sweep.params, reps)}
        combos = [{**first, p.key: v} for p, r in zip(sweep.params, reps) for v in r]
    configs = []
    for combo in combos:
        try:
            configs.append(sweep.resolve(combo))
        except UserError as exc:
            trial = ", ".join(f"{k}={v!r}" for k, v in combo.items())
            raise UserError(f"{exc} (sweep trial {trial})") from None
    return configs


def describe(values: Mapping[str, Any]) -> str:
    """`strategy.name=pada seed=1`: a short label of a trial's parameter values."""
    return " ".join(f"{key}={value_text(value)}" for key, value in values.items())


def value_text(value: Any) -> str:
    """A parameter value as a table cell: 4 significant digits for floats, compact JSON for sections."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (Mapping, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def environment_passthrough() -> dict[str, str]:
    """Environment variables that trial processes on any node get from the driver: the thread pins and this
    project's own settings (e.g. SUPERNAS_SHARED_DATA)."""
    keep = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("SUPERNAS_")}
