"""Continual learning with hypernetworks (von Oswald et al. 2020).

A task-conditioned hypernetwork makes the target's weights ``theta_k = H(e_k)``
for each task; while it learns task ``t``, an output regularizer keeps
``H(e_k)`` for the earlier tasks where it was. :class:`ContinualLearning` is the
method as one object for a user's own training loop; the functions are its parts:

- :mod:`.regularizer`: the stored targets, the output regularizer, Adam's look-ahead;
- :mod:`.evaluation`: test metrics, task inference by predictive entropy (CL3),
  final average and forgetting of an accuracy matrix;
- :mod:`.dependency_rnn`: the RNN hypernetwork of dependency-preserving hypernetworks (Chandra et al. 2023);
- :mod:`.network_growth`: its per-task parameter copies (the authors' network growth);
- :mod:`.init`: the hypernetwork init of the released code (Xavier, zero biases).

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from hyperdnn.methods.continual.dependency_rnn import dependency_preserving_hnet, freeze_recurrent_, recurrent_parameters
from hyperdnn.methods.continual.evaluation import (
    average_final,
    cl3_predict,
    forgetting,
    infer_task,
    predictive_entropy,
    score,
)
from hyperdnn.methods.continual.init import xavier_init_
from hyperdnn.methods.continual.method import CL3Scores, ContinualLearning, ContinualResults, ContinualStep
from hyperdnn.methods.continual.network_growth import NetworkGrowth
from hyperdnn.methods.continual.regularizer import (
    adam_lookahead,
    choose_regularized_tasks,
    flat_weights,
    output_regularizer,
    store_targets,
)

__all__ = [
    "CL3Scores",
    "ContinualLearning",
    "ContinualResults",
    "ContinualStep",
    "NetworkGrowth",
    "adam_lookahead",
    "average_final",
    "choose_regularized_tasks",
    "cl3_predict",
    "dependency_preserving_hnet",
    "flat_weights",
    "forgetting",
    "freeze_recurrent_",
    "infer_task",
    "output_regularizer",
    "predictive_entropy",
    "recurrent_parameters",
    "score",
    "store_targets",
    "xavier_init_",
]
