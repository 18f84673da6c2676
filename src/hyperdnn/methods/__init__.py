"""Methods built on the core, one subpackage each (see docs/methods.md for the shape they share).

- :mod:`hyperdnn.methods.continual`: continual learning with hypernetworks
  (von Oswald et al. 2020), :class:`ContinualLearning`.

Every public name of a method's subpackage is exported here too
(``hyperdnn.methods.ContinualLearning``).
"""

from hyperdnn.methods.continual import (
    CL3Scores,
    ContinualLearning,
    ContinualResults,
    ContinualStep,
    adam_lookahead,
    average_final,
    choose_regularized_tasks,
    cl3_predict,
    flat_weights,
    forgetting,
    infer_task,
    output_regularizer,
    predictive_entropy,
    score,
    store_targets,
    xavier_init_,
)

__all__ = [
    "CL3Scores",
    "ContinualLearning",
    "ContinualResults",
    "ContinualStep",
    "adam_lookahead",
    "average_final",
    "choose_regularized_tasks",
    "cl3_predict",
    "flat_weights",
    "forgetting",
    "infer_task",
    "output_regularizer",
    "predictive_entropy",
    "score",
    "store_targets",
    "xavier_init_",
]
