"""hyperdnn: hypernetworks for any PyTorch model.

A hypernetwork H maps a condition c to the weights theta of a target network F;
the pair is a HyperDNN, ``y = F(x; H(c; phi))``. Each of the five design axes is
a swappable part: inputs (``TaskEmbedding``, ``External``, ``DataEncoder``,
``Noise``, ``Concat``), outputs (``GenerateOnce``, ``MultiHead``,
``ComponentWise``, ``ChunkWise``, ``LowRank``, ``Additive``, ``Implicit``), bodies (``MLP``,
``RNN``, ``Attention``), static or per-sample inputs (the shape of the
condition) and the target's selected parameters.

Built on the core: ``HyperLSTM`` and ``hyper_conv`` (Ha et al. 2016),
``hyperdnn.methods`` (continual learning, von Oswald et al. 2020),
``hyperdnn.data`` (MNIST IDX and text-corpus loaders, task sequences), and the
``hyperdnn`` command (``hyperdnn.experiments``, not imported by the core) that runs the published experiments.
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
from .factored import Factored
from .hyperdnn import HyperDNN, require_finite
from .hypernetwork import HyperNetwork
from .layers import HyperLSTM, HyperLSTMCell, LayerNormLSTM, conv_kernels, hyper_conv
from .outputs import Additive, ChunkWise, ComponentWise, GenerateOnce, Implicit, LowRank, MultiHead
from .summary import Summary

import importlib as _importlib
from typing import Any as _Any

# Subpackages load on first use (PEP 562): ``import hyperdnn`` stays the core alone,
# without the download code of ``data`` or what the methods bring.
_LAZY = ("data", "methods")


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hyperdnn' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Additive",
    "Attention",
    "CheckpointError",
    "ChunkWise",
    "ComponentWise",
    "Concat",
    "ConfigError",
    "conv_kernels",
    "data",
    "DataEncoder",
    "DataError",
    "External",
    "Factored",
    "GenerateOnce",
    "HDTypeError",
    "hyper_conv",
    "HyperDNN",
    "HyperDNNError",
    "HyperLSTM",
    "HyperLSTMCell",
    "HyperNetwork",
    "Implicit",
    "LayerNormLSTM",
    "load",
    "LowRank",
    "methods",
    "MLP",
    "MultiHead",
    "Noise",
    "NonFiniteWeightsError",
    "require_finite",
    "RNN",
    "save",
    "ShapeError",
    "Summary",
    "TaskEmbedding",
]
