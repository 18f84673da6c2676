"""Any-width networks from one implicit hypernetwork (NeuMeta, Yang & Wang, ECCV 2024).

| file | what |
|---|---|
| method.py | ``AnyWidth``: the training method (sampled width, task loss, reconstruction, distillation) |
| permute.py | ``smooth_permutation``: reorder hidden channels along a short Hamiltonian path |
| prune.py | ``keep_first_channels``: the no-hypernetwork baseline (a wide network cut to k channels) |
"""

from .method import AnyWidth, weighted_reconstruction
from .permute import chain_groups, shortest_path_order, smooth_permutation, total_variation
from .prune import keep_first_channels

__all__ = [
    "AnyWidth",
    "chain_groups",
    "keep_first_channels",
    "shortest_path_order",
    "smooth_permutation",
    "total_variation",
    "weighted_reconstruction",
]
