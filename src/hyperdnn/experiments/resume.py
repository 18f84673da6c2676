"""The checks of ``--resume``: what it refuses, and what the run's config.json fixes."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hyperdnn.errors import CheckpointError, ConfigError, HyperDNNError
from hyperdnn.experiments.run_dir import CONFIG, RESULTS, config_from_json, read_run_config

# run options that config.json fixes for a run: refused with --resume rather than ignored
FIXED_ON_RESUME = ("config", "seed", "device", "out_dir", "checkpoint_every", "log_every", "skip_nonfinite")
TAKEN_ON_RESUME = ("threads", "data_dir", "no_progress")


def refuse_fixed_options(given: list[str], as_flags: bool) -> None:
    """The one place that refuses options that the run's config.json fixes.

    Args:
        given: names of the options given with resume (run options and recipe config fields).
        as_flags: name them as command-line flags (``--seed``) rather than keywords (``seed``).

    Raises:
        ConfigError: ``given`` is not empty.
    """
    if not given:
        return
    if as_flags:
        names = ", ".join(k if k.startswith("--") else "--" + k.replace("_", "-") for k in given)
        takes = ", ".join("--" + k.replace("_", "-") for k in TAKEN_ON_RESUME[:-1]) + " and --no-progress"
        raise ConfigError(f"hyperdnn run --resume: the run's config.json fixes {names}; drop them (only {takes} may be given with --resume)")
    raise ConfigError(f"run --resume: the run's config.json fixes {', '.join(sorted(given))}; drop them (only threads and data_dir may be given on resume)")


def check_device(name: str, saved_in: Path | None = None) -> torch.device:
    """``name`` as a torch.device, or ConfigError if it is malformed or not present here."""
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ConfigError(f"run: device must be 'cpu' or 'cuda' (or 'cuda:N') (got {name!r})")
    if name.startswith("cuda"):
        problem = None
        if not torch.cuda.is_available():
            problem = f"torch.cuda.is_available() is False (torch {torch.__version__})"
        elif ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
            problem = f"only {torch.cuda.device_count()} CUDA device(s) are visible"
        if problem is not None:
            if saved_in is not None:
                raise ConfigError(
                    f"run --resume: the run was made on device {name!r} ({saved_in}), but here {problem}; resume it where "
                    f"{name!r} exists (the device cannot change on resume: the result would differ from the uninterrupted run's)"
                )
            raise ConfigError(f"run: device {name!r} asked for but {problem}")
    return torch.device(name)


@dataclass
class ResumePlan:
    """What a resumed run takes from its config.json (and the two options it may change)."""

    config: Any
    seed: int
    device: str
    torch_device: torch.device
    threads: int
    data_dir: str | Path | None
    checkpoint_every: int
    log_every: int
    skip_nonfinite: bool
    world_size: int


def plan_resume(run_dir: Path, recipe: Any, threads: int | None, data_dir: str | Path | None, world_size: int = 1) -> ResumePlan:
    """Read ``run_dir/config.json`` and check that ``recipe`` can resume it here.

    Raises:
        CheckpointError: config.json damaged, or the run already finished.
        ConfigError: another recipe's run, another device, or another number of processes.
    """
    saved = read_run_config(run_dir)
    cfg_path = run_dir / CONFIG
    if saved["recipe"] != recipe.name:
        raise ConfigError(f"run --resume: {run_dir} is a '{saved['recipe']}' run (asked to resume it as '{recipe.name}')")
    try:
        config = config_from_json(recipe.config, saved["config"])
    except (HyperDNNError, TypeError) as e:
        raise CheckpointError(f"run --resume: {cfg_path} holds a config that '{recipe.name}' does not accept: {e}") from e
    if (run_dir / RESULTS).exists():
        raise CheckpointError(f"run --resume: {run_dir} has already finished (results.json exists); start a new run instead")
    saved_world = saved.get("world_size", 1)
    if saved_world != world_size:
        raise ConfigError(
            f"run --resume: {run_dir} was trained by {saved_world} process(es), here there are {world_size}; resume it with "
            f"{'torchrun --nproc_per_node ' + str(saved_world) + ' -m hyperdnn' if saved_world > 1 else 'hyperdnn (no torchrun)'} run --resume {run_dir} "
            f"(the number of processes cannot change: the result would differ)"
        )
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser().resolve()
        if str(data_dir) != saved.get("data_dir"):
            print(f"note: reading data from {data_dir} (the run used {saved.get('data_dir') or 'the default data directory'})", file=sys.stderr)
    else:
        data_dir = saved.get("data_dir")
    dev = check_device(saved["device"], saved_in=cfg_path)
    if threads is None:
        threads = saved.get("threads") or 1
    elif saved.get("threads") != threads:
        print(f"note: the run used {saved.get('threads')} threads, resuming with {threads}; results may differ in the last digits", file=sys.stderr)
    return ResumePlan(
        config=config,
        seed=saved["seed"],
        device=saved["device"],
        torch_device=dev,
        threads=threads,
        data_dir=data_dir,
        checkpoint_every=saved.get("checkpoint_every", 500),
        log_every=saved.get("log_every", 10),  # runs made before log_every was recorded logged every 10 steps
        skip_nonfinite=saved.get("skip_nonfinite", False),
        world_size=saved_world,
    )
