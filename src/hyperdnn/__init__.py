"""hyperdnn: hypernetworks for any PyTorch model.

A hypernetwork H maps a condition c to the weights theta of a target network F;
the pair is a HyperDNN, ``y = F(x; H(c; phi))``. Each of the five design axes is
a swappable part: inputs (``TaskEmbedding``, ``External``, ``DataEncoder``,
``Noise``, ``Concat``), outputs (``GenerateOnce``, ``MultiHead``,
``ComponentWise``, ``ChunkWise``, ``LowRank``, ``Additive``), bodies (``MLP``,
``RNN``, ``Attention``), static or per-sample inputs (the shape of the
condition) and the target's selected parameters.
"""

from .bodies import MLP, RNN, Attention
from .checkpoint import load, save
from .conditioning import Concat, DataEncoder, External, Noise, TaskEmbedding
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    HDTypeError,
    HyperDNNError,
    NonFiniteWeightsError,
    ShapeError,
)
from .hyperdnn import HyperDNN, check_finite
from .hypernetwork import HyperNetwork
from .outputs import Additive, ChunkWise, ComponentWise, GenerateOnce, LowRank, MultiHead
from .summary import Summary

__version__ = "0.1.0"

__all__ = sorted([
    "MLP", "RNN", "Attention",
    "load", "save",
    "Concat", "DataEncoder", "External", "Noise", "TaskEmbedding",
    "CheckpointError", "ConfigError", "DataError", "HDTypeError", "HyperDNNError", "NonFiniteWeightsError", "ShapeError",
    "HyperDNN", "check_finite", "HyperNetwork",
    "Additive", "ChunkWise", "ComponentWise", "GenerateOnce", "LowRank", "MultiHead",
    "Summary",
])
