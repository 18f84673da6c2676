"""The experiment runner behind the ``hyperdnn`` command: recipes, run directories, run checkpoints.

Not imported by the core (``import hyperdnn`` loads none of it). A recipe is a
config dataclass and a ``run(ctx)`` function registered with :func:`recipe`
(see ``docs/recipes.md``); :func:`run_recipe` runs one into a run directory.
"""

from hyperdnn.experiments.context import NonFiniteLossError, RunContext, RunInterrupted
from hyperdnn.experiments.loading import LoadedRun, load_run
from hyperdnn.experiments.registry import Recipe, all_recipes, get_recipe, load_recipe_file, recipe, register
from hyperdnn.experiments.runs import RunResult, run_recipe

__all__ = [
    "all_recipes",
    "get_recipe",
    "LoadedRun",
    "load_run",
    "load_recipe_file",
    "NonFiniteLossError",
    "Recipe",
    "recipe",
    "register",
    "RunContext",
    "RunInterrupted",
    "RunResult",
    "run_recipe",
]
