"""The experiment runner behind the ``hyperdnn`` command: recipes, run directories, run checkpoints.

Not imported by the core (``import hyperdnn`` loads none of it).
"""
