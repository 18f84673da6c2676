"""The registry of recipes: the built-in ones, a recipe file given by path, and other packages' entry points.

Three ways a recipe joins:

* a module in ``hyperdnn/experiments/recipes/`` (imported on first use);
* a Python file named on the command line, ``hyperdnn run path/to/my_recipe.py``
  (:func:`load_recipe_file`);
* an installed package that declares an entry point in the group
  ``hyperdnn.recipes`` (``[project.entry-points."hyperdnn.recipes"]
  my-recipe = "my_package.my_recipe"``), pointing at a module that registers
  recipes with :func:`recipe` when imported, or at a :class:`Recipe` object.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass, is_dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from hyperdnn.errors import ConfigError

ENTRY_POINT_GROUP = "hyperdnn.recipes"


@dataclass(frozen=True)
class Recipe:
    """A registered experiment.

    Attributes:
        name: the CLI name (``hyperdnn run NAME``), lower-case with dashes.
        summary: one line for ``hyperdnn list``.
        config: a dataclass type; ``config()`` gives the published defaults. Each field is
            an option ``--field-name``; ``field(metadata={"help": ..., "choices": [...]})``
            gives its help text and allowed values.
        run: ``run(ctx: hyperdnn.experiments.context.RunContext) -> dict`` (the dict goes
            into results.json).
        source: the file a recipe loaded by path came from (recorded in config.json so that
            ``--resume`` finds it again), else None.
        build: optional ``build(config) -> nn.Module`` that rebuilds the trained model's
            skeleton, for :func:`hyperdnn.experiments.load_run`.
        figures: optional ``figures(run_dir, name, results, published) -> list[Path]`` drawn
            from the results once the run is done (``published``: the config is the recipe's
            defaults, so the paper's numbers apply).
    """

    name: str
    summary: str
    config: type
    run: Callable[[Any], dict]
    source: str | None = None
    build: Callable[[Any], Any] | None = None
    figures: Callable[..., Any] | None = None


_REGISTRY: dict[str, Recipe] = {}
_BROKEN: dict[str, str] = {}
_discovered = False
_loading_file: str | None = None


def register(r: Recipe) -> Recipe:
    """Add a recipe to the registry (``ConfigError`` on a duplicate name or a non-dataclass config)."""
    if not is_dataclass(r.config) or not isinstance(r.config, type):
        raise ConfigError(f"recipe '{r.name}': config must be a dataclass type (got {r.config!r})")
    if not isinstance(r.name, str) or not r.name or r.name != r.name.lower() or " " in r.name:
        raise ConfigError(f"recipe: name must be lower-case without spaces (got {r.name!r})")
    if r.source is None and _loading_file is not None:
        r = Recipe(r.name, r.summary, r.config, r.run, _loading_file, r.build, r.figures)
    old = _REGISTRY.get(r.name)
    if old is not None and (old.run.__module__, old.source) != (r.run.__module__, r.source):
        where = lambda x: x.source or x.run.__module__  # noqa: E731
        raise ConfigError(f"recipe '{r.name}' is registered twice ({where(old)} and {where(r)}); rename one of them")
    _REGISTRY[r.name] = r
    return r


def recipe(name: str, summary: str, config: type, build: Callable[[Any], Any] | None = None, figures: Callable[..., Any] | None = None) -> Callable[[Callable[[Any], dict]], Callable[[Any], dict]]:
    """Decorator that registers ``run(ctx)`` as recipe ``name``.

    Args:
        name: CLI name, e.g. ``"split-mnist"``.
        summary: one line for ``hyperdnn list``.
        config: the config dataclass type (defaults = the published configuration).
        build: optional ``build(config) -> nn.Module`` for :func:`hyperdnn.experiments.load_run`.
        figures: optional ``figures(run_dir, name, results, published)`` drawn after the run.
    """

    def deco(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
        register(Recipe(name=name, summary=summary, config=config, run=fn, build=build, figures=figures))
        return fn

    return deco


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    from hyperdnn.experiments import recipes as builtin

    for info in sorted(pkgutil.iter_modules(builtin.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{builtin.__name__}.{info.name}")
        except Exception as e:  # one broken recipe file must not take down the whole CLI
            _BROKEN[info.name] = f"{type(e).__name__}: {e}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, Recipe):
                register(obj)
        except Exception as e:
            _BROKEN[f"entry point {ep.name} ({ep.value})"] = f"{type(e).__name__}: {e}"


def load_recipe_file(path: str | Path) -> list[Recipe]:
    """Import a recipe file by path and return the recipes it registered.

    Args:
        path: a ``.py`` file that registers one or more recipes with :func:`recipe`.

    Raises:
        ConfigError: not a ``.py`` file, it fails to import (the error is named), or it
            registers no recipe.
    """
    global _loading_file
    _discover()
    file = Path(path).expanduser().resolve()
    if file.suffix != ".py" or not file.is_file():
        raise ConfigError(f"recipe: {path} is not a Python file (expected a path to a .py file that registers a recipe)")
    for r in _REGISTRY.values():
        if r.source == str(file):  # loaded already
            return [x for x in _REGISTRY.values() if x.source == str(file)]
    before = set(_REGISTRY)
    mod_name = f"hyperdnn_recipe_file_{abs(hash(str(file)))}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"recipe: cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling-free lookups need the module registered
    _loading_file = str(file)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ConfigError(f"recipe: {file} failed to import ({type(e).__name__}: {e})") from e
    finally:
        _loading_file = None
    found = [_REGISTRY[k] for k in sorted(set(_REGISTRY) - before)]
    if not found:
        raise ConfigError(f"recipe: {file} registers no recipe (decorate its run function with @hyperdnn.experiments.recipe(name, summary, Config))")
    return found


def all_recipes() -> list[Recipe]:
    """Every registered recipe, sorted by name."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def broken_recipe_modules() -> dict[str, str]:
    """Recipe modules and entry points that failed to import: ``{name: error}``."""
    _discover()
    return dict(_BROKEN)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (or the one recipe of the file ``name``, a path ending in .py).

    Raises:
        ConfigError: unknown name; the message suggests the nearest and lists the known ones.
    """
    _discover()
    if isinstance(name, str) and name.endswith(".py"):
        found = load_recipe_file(name)
        if len(found) > 1:
            raise ConfigError(f"recipe: {name} registers {len(found)} recipes ({', '.join(r.name for r in found)}); a recipe file run by its path must register exactly one")
        return found[0]
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        near = difflib.get_close_matches(str(name), list(_REGISTRY), n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]}?" if near else ""
        extra = f"; modules that failed to import: {_BROKEN}" if _BROKEN else ""
        raise ConfigError(f"recipe: unknown recipe {name!r}{hint} (known: {known}){extra}")
    return _REGISTRY[name]
