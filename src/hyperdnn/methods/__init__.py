"""Methods built on the core: continual learning with hypernetworks."""

from hyperdnn.methods.continual import (
    adam_lookahead,
    average_final,
    choose_regularized_tasks,
    cl3_predict,
    flat_weights,
    forgetting,
    freeze_other_task_embeddings,
    infer_task,
    output_regularizer,
    predictive_entropy,
    store_targets,
    task_embedding_table,
)

__all__ = [
    "adam_lookahead",
    "average_final",
    "choose_regularized_tasks",
    "cl3_predict",
    "flat_weights",
    "forgetting",
    "freeze_other_task_embeddings",
    "infer_task",
    "output_regularizer",
    "predictive_entropy",
    "store_targets",
    "task_embedding_table",
]
