"""The registry of runnable experiments behind ``hyperdnn run RECIPE``.

A recipe is a name, a one-line summary, a config dataclass (its defaults are
the published configuration) and a ``run(ctx)`` function. Adding one is one
file in this folder with one decorator; every module in ``hyperdnn/recipes/``
is imported when the registry is first used, so nothing else needs editing::

    # src/hyperdnn/recipes/my_recipe.py
    from dataclasses import dataclass
    from hyperdnn.recipes import recipe
    from hyperdnn.runs import RunContext

    @dataclass
    class Config:
        steps: int = 1000          # `steps` is the name the CLI's --steps sets
        lr: float = 1e-3
        hidden: tuple[int, ...] = (100, 100)

    @recipe("my-recipe", "one line shown by `hyperdnn list`", Config)
    def run(ctx: RunContext) -> dict:
        cfg = ctx.config                          # a Config, CLI overrides applied
        model, opt = ..., ...                     # build on ctx.device
        gen = torch.Generator().manual_seed(ctx.seed)
        ctx.track(model=model, optimizer=opt, data_rng=gen)   # state saved in checkpoints
        state = ctx.restore({"step": 0})          # {"step": 0} fresh, the saved dict on --resume
        ctx.progress(total=cfg.steps)             # tqdm bar (resumes at ctx.global_step)
        while state["step"] < cfg.steps:
            loss = ...                            # one optimizer step
            state["step"] += 1                    # update the loop state BEFORE step_done
            ctx.step_done(loss=loss.item())       # bar, metrics.jsonl, periodic checkpoint, Ctrl-C
        ctx.log(kind="eval", test_loss=...)       # extra metrics.jsonl rows (e.g. evaluations)
        ctx.table("Final", ["metric", "value"], [["loss", loss.item()]])
        return {"final_loss": loss.item()}        # -> results.json

Rules that make ``--resume`` exact: all randomness comes from the global RNGs
(seeded with ``ctx.seed``; saved in checkpoints) or from generators passed to
``ctx.track``; everything that changes during training is either tracked or in
the ``state`` dict (JSON-able: numbers, strings, lists, dicts); the loop
continues from ``state`` alone. Every config field becomes a ``hyperdnn run
RECIPE --field-name VALUE`` option (int, float, str, bool, tuples as
``1,2,3``); ``--seed``, ``--threads``, ``--device``, ``--data-dir``,
``--out-dir`` live on the context, not in the config.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, is_dataclass
from typing import Any, Callable

from hyperdnn.errors import ConfigError

__all__ = ["Recipe", "all_recipes", "broken_recipe_modules", "get_recipe", "recipe", "register"]


@dataclass(frozen=True)
class Recipe:
    """A registered experiment.

    Attributes:
        name: the CLI name (``hyperdnn run NAME``), lower-case with dashes.
        summary: one line for ``hyperdnn list``.
        config: a dataclass type; ``config()`` gives the published defaults.
        run: ``run(ctx: hyperdnn.runs.RunContext) -> dict`` (the dict goes into results.json).
    """

    name: str
    summary: str
    config: type
    run: Callable[[Any], dict]


_REGISTRY: dict[str, Recipe] = {}
_BROKEN: dict[str, str] = {}
_discovered = False


def register(r: Recipe) -> Recipe:
    """Add a recipe to the registry (``ConfigError`` on a duplicate name or a non-dataclass config)."""
    if not is_dataclass(r.config) or not isinstance(r.config, type):
        raise ConfigError(f"recipe '{r.name}': config must be a dataclass type (got {r.config!r})")
    if not r.name or r.name != r.name.lower() or " " in r.name:
        raise ConfigError(f"recipe: name must be lower-case without spaces (got {r.name!r})")
    old = _REGISTRY.get(r.name)
    if old is not None and old.run.__module__ != r.run.__module__:
        raise ConfigError(f"recipe '{r.name}' is registered twice ({old.run.__module__} and {r.run.__module__})")
    _REGISTRY[r.name] = r
    return r


def recipe(name: str, summary: str, config: type) -> Callable[[Callable[[Any], dict]], Callable[[Any], dict]]:
    """Decorator that registers ``run(ctx)`` as recipe ``name``.

    Args:
        name: CLI name, e.g. ``"split-mnist"``.
        summary: one line for ``hyperdnn list``.
        config: the config dataclass type (defaults = the published configuration).
    """

    def deco(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
        register(Recipe(name=name, summary=summary, config=config, run=fn))
        return fn

    return deco


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # one broken recipe file must not take down the whole CLI
            _BROKEN[info.name] = f"{type(e).__name__}: {e}"


def all_recipes() -> list[Recipe]:
    """Every registered recipe, sorted by name."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def broken_recipe_modules() -> dict[str, str]:
    """Recipe modules that failed to import: ``{module name: error}``."""
    _discover()
    return dict(_BROKEN)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ConfigError`` listing the known names otherwise."""
    _discover()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        extra = f"; modules that failed to import: {_BROKEN}" if _BROKEN else ""
        raise ConfigError(f"recipe: unknown recipe {name!r} (known: {known}){extra}")
    return _REGISTRY[name]
