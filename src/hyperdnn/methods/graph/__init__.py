"""Graph hypernetworks: predict the parameters of unseen architectures (GHN-2, LoGAH).

| file | what |
|---|---|
| graph.py | ``graph_of``: a model's fx graph (nodes, edges, virtual edges); ``module_chain_graph`` |
| export_graph.py | ``export_graph``: the same graph read with ``torch.export`` (HuggingFace models) |
| gnn.py | ``GatedGNN``: GHN-2's forward/backward gated message passing |
| decoder_tiled.py | ``TiledDecoder``: GHN-2's fixed block, sliced and tiled |
| decoder_lowrank.py | ``LowRankDecoder``: LoGAH's ``A B^T`` with blocks of ``A`` and ``B``; ``LoGAHDecoder``: the authors' form |
| normalize.py | ``fan_in_normalize``: GHN-2's normalisation of predicted parameters; ``std_normalize``: LoGAH's |
| ghn.py | ``GraphHyperNetwork``: graph in, ``{name: Tensor | Factored}`` out |
| predict.py | ``predict_into`` (initialise a model), ``run_with`` (a call with predicted parameters) |
| samplers.py | architecture spaces: MLP/CNN/ResNet for MNIST, tiny GPT-2-style char LMs |
| meta_batch.py | ``GHNTraining``: GHN-2's meta-batched training step and evaluation |
"""

from .decoder_lowrank import LoGAHDecoder, LowRankDecoder, block_codes
from .decoder_tiled import TiledDecoder, tile_to
from .export_graph import export_graph
from .ghn import GraphHyperNetwork
from .gnn import GatedGNN
from .graph import NODE_KINDS, GraphNode, ModelGraph, graph_of, module_chain_graph
from .meta_batch import GHNStep, GHNTraining
from .normalize import fan_in_normalize, std_normalize
from .predict import predict_into, run_with, write_params
from .samplers import CharGPTArch, CharGPTSpace, MnistArch, MnistArchSpace

__all__ = [
    "NODE_KINDS",
    "CharGPTArch",
    "CharGPTSpace",
    "GHNStep",
    "GHNTraining",
    "GatedGNN",
    "GraphHyperNetwork",
    "GraphNode",
    "LoGAHDecoder",
    "LowRankDecoder",
    "MnistArch",
    "MnistArchSpace",
    "ModelGraph",
    "TiledDecoder",
    "block_codes",
    "export_graph",
    "fan_in_normalize",
    "graph_of",
    "module_chain_graph",
    "predict_into",
    "run_with",
    "std_normalize",
    "tile_to",
    "write_params",
]
