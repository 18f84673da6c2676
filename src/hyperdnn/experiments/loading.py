"""Getting a finished (or interrupted) run's trained models back: :func:`load_run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from hyperdnn.errors import CheckpointError, ConfigError
from hyperdnn.experiments.files import read_small
from hyperdnn.experiments.run_checkpoint import load_state_into
from hyperdnn.experiments.run_dir import RESULTS, config_from_json, read_run_config
from hyperdnn.experiments.store import CheckpointStore


@dataclass
class LoadedRun:
    """A run read back from its directory.

    Attributes:
        recipe: the recipe's name.
        config: the recipe config the run used.
        models: ``{tracked name: module}`` with the weights of the run's last checkpoint, in eval mode.
        results: results.json's ``results`` (empty for an unfinished run).
        step: the global step of the checkpoint loaded.
    """

    recipe: str
    config: Any
    models: dict[str, nn.Module]
    results: dict[str, Any]
    step: int

    @property
    def model(self) -> nn.Module:
        """The trained model: ``models["model"]`` or the only one (ConfigError when several)."""
        if "model" in self.models:
            return self.models["model"]
        if len(self.models) == 1:
            return next(iter(self.models.values()))
        raise ConfigError(f"load_run: the {self.recipe} run trained several models ({', '.join(self.models)}); pick one from .models")


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a run's trained models from its config.json and its last checkpoint (sha256-verified).

    Args:
        run_dir: a directory made by ``hyperdnn run``.

    Returns:
        :class:`LoadedRun`; ``load_run(d).model`` is the trained model, e.g. the HyperDNN
        of a split-mnist run (``model(x, task=k)``).

    Raises:
        CheckpointError: no checkpoint, or damaged files.
        ConfigError: the recipe cannot rebuild its models (it declares no ``build``).
    """
    import json

    from hyperdnn.experiments.recipes import get_recipe, load_recipe_file

    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    if isinstance(saved.get("recipe_source"), str):
        load_recipe_file(saved["recipe_source"])
    recipe = get_recipe(saved["recipe"])
    if recipe.build is None:
        raise ConfigError(f"load_run: recipe '{recipe.name}' declares no build(config, results) to rebuild its models; pass build= to @recipe")
    config = config_from_json(recipe.config, saved["config"])
    results: dict[str, Any] = {}
    if (run_dir / RESULTS).exists():
        results = json.loads(read_small(run_dir / RESULTS, cap=64 << 20, what="load_run"))["results"]
    store = CheckpointStore(run_dir)
    ckpt_dir = store.latest()
    if ckpt_dir is None:
        raise CheckpointError(f"load_run: {run_dir} has no checkpoint (LATEST was never written): nothing was trained yet")
    ckpt = store.load(ckpt_dir)
    models = recipe.build(config, results)
    for name, module in models.items():
        if name not in ckpt["objects"]:
            raise CheckpointError(f"load_run: {ckpt_dir} holds no '{name}' (it holds {', '.join(sorted(ckpt['objects']))})")
        load_state_into(module, ckpt["objects"][name], name)
        module.eval()
    return LoadedRun(recipe=recipe.name, config=config, models=models, results=results, step=ckpt["meta"]["global_step"])
