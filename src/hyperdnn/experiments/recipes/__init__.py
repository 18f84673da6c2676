"""The registry of runnable experiments behind ``hyperdnn run RECIPE``.

A recipe is a name, a one-line summary, a config dataclass (its defaults are
the published configuration) and a ``run(ctx)`` function. Adding one is one
file in this folder with one decorator; every module in ``hyperdnn/experiments/recipes/``
is imported when the registry is first used, so nothing else needs editing::

    # src/hyperdnn/experiments/recipes/my_recipe.py
    from dataclasses import dataclass
    from hyperdnn.experiments.recipes import recipe
    from hyperdnn.experiments.runs import RunContext

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

A config checks its values in ``__post_init__`` with the small helpers below,
so that a bad option fails before the run directory is made, with a message
naming the recipe, the field, the value and what was expected::

    def __post_init__(self) -> None:
        positive("my-recipe", "steps", self.steps)
        positive("my-recipe", "lr", self.lr, float)
        positive_ints("my-recipe", "hidden", self.hidden)
        one_of("my-recipe", "activation", self.activation, ("relu", "elu"))
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.experiments.registry import Recipe, all_recipes, broken_recipe_modules, get_recipe, load_recipe_file, recipe, register

__all__ = [
    "Recipe",
    "all_recipes",
    "boolean",
    "broken_recipe_modules",
    "get_recipe",
    "load_recipe_file",
    "in_range",
    "non_negative",
    "one_of",
    "positive",
    "positive_ints",
    "recipe",
    "register",
    "some_of",
]


# ----------------------------------------------------------------------------- config checks


def _number(part: str, name: str, value: Any, kind: type) -> None:
    """HDTypeError unless ``value`` is an int (kind=int) or a finite int/float (kind=float); bool is not a number."""
    ok = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok):
        want = "an int" if kind is int else "a number"
        raise HDTypeError(f"{part}: {name} must be {want} (got {type(value).__name__} {value!r})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{part}: {name} must be a finite number (got {value})")


def positive(part: str, name: str, value: Any, kind: type = int) -> None:
    """Raise unless ``value`` is > 0.

    Args:
        part: the recipe's name, e.g. ``"toy-regression"`` (starts the message).
        name: the config field, e.g. ``"steps"``.
        value: the value to check.
        kind: ``int`` (default) or ``float`` (any finite int or float).

    Raises:
        ConfigError: ``toy-regression: steps must be > 0 (got -5)``.
        HDTypeError: not an int / a number (bool counts as neither).
    """
    _number(part, name, value, kind)
    if not value > 0:
        raise ConfigError(f"{part}: {name} must be > 0 (got {value})")


def non_negative(part: str, name: str, value: Any, kind: type = int) -> None:
    """Raise unless ``value`` is >= 0 (arguments as :func:`positive`)."""
    _number(part, name, value, kind)
    if not value >= 0:
        raise ConfigError(f"{part}: {name} must be >= 0 (got {value})")


def in_range(part: str, name: str, value: Any, low: float, high: float, kind: type = int) -> None:
    """Raise unless ``low <= value <= high`` (arguments as :func:`positive`)."""
    _number(part, name, value, kind)
    if not low <= value <= high:
        raise ConfigError(f"{part}: {name} must be in [{low}, {high}] (got {value})")


def positive_ints(part: str, name: str, values: Any, allow_empty: bool = True) -> None:
    """Raise unless ``values`` is a tuple of ints > 0 (layer widths); empty only with ``allow_empty``."""
    if not isinstance(values, tuple):
        raise HDTypeError(f"{part}: {name} must be a tuple of ints (got {type(values).__name__} {values!r})")
    if not values and not allow_empty:
        raise ConfigError(f"{part}: {name} must hold at least one width (got ())")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{part}: {name} must be ints > 0 (got {values!r})")


def boolean(part: str, name: str, value: Any) -> None:
    """Raise HDTypeError unless ``value`` is True or False (1 and 0 are not flags)."""
    if not isinstance(value, bool):
        raise HDTypeError(f"{part}: {name} must be True or False (got {type(value).__name__} {value!r})")


def one_of(part: str, name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices`` (the message lists them)."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{part}: {name} must be one of {', '.join(map(repr, choices))} (got {value!r})")


def some_of(part: str, name: str, values: Iterable[Any], choices: Iterable[Any]) -> tuple:
    """Return ``values`` as a tuple; ConfigError unless it is non-empty and each is one of ``choices``."""
    values, choices = tuple(values), list(choices)
    if not values:
        raise ConfigError(f"{part}: {name} must name at least one of {', '.join(map(str, choices))} (got none)")
    for v in values:
        if v not in choices:
            raise ConfigError(f"{part}: unknown {name[:-1] if name.endswith('s') else name} {v!r} in {name} "
                              f"(expected some of {', '.join(map(str, choices))})")
    return values
