"""Dependency-preserving hypernetworks: an RNN generates the target chunk by chunk.

Chandra, Varshney, Srijith, Gupta, "Continual Learning with Dependency Preserving
Hypernetworks" (WACV 2023): instead of a chunked MLP hypernetwork, which makes
every chunk of the target's weights independently of the others, an LSTM walks
the chunks in order, its input at chunk ``c`` being ``[e_task, e_c]`` and its
state carrying what it generated before, and a linear head maps each hidden
state to a chunk. In hyperdnn this is ``ChunkWise`` outputs with an ``RNN`` body
(the body sees the chunk tokens in order); :func:`dependency_preserving_hnet`
builds it with the authors' LSTM (one layer, hidden 96, the authors'
``hnets/chunked_hyper_model.py`` ``_lstm_hidden_size``).

What the core's RNN body lacks for continual learning is what the authors' LSTM
cell (``LSTMs/LSTM_cell.py``) does after the first task: its hidden-to-hidden
weights are frozen ("Hidden state weights of LSTM are frozen after first task"),
so the dependency structure learned on task 1 is kept and later tasks adapt the
input weights, the head, the chunk embeddings and their own task embedding,
under the usual output regularizer. :func:`freeze_recurrent_` does that. The
authors' network growth (a copy of these parameters per task, as their code shows
it) is :class:`~hyperdnn.methods.continual.NetworkGrowth`; the paper's own
regularisation of the RNN could not be read and is not built.
"""

from __future__ import annotations

from torch import nn

from hyperdnn.bodies import RNN, RNNBody
from hyperdnn.conditioning import TaskEmbedding
from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.outputs import ChunkWise

__all__ = ["dependency_preserving_hnet", "freeze_recurrent_", "recurrent_parameters"]


def dependency_preserving_hnet(target: nn.Module, num_tasks: int, *, emb_dim: int = 96, chunk_size: int = 3500, chunk_dim: int = 96,
                               hidden: int = 96, cell: str = "lstm") -> HyperDNN:
    """A task-conditioned hypernetwork whose RNN generates the target's weights chunk by chunk.

    Args:
        target: the target network (all its parameters are generated).
        num_tasks: task embeddings.
        emb_dim: task embedding width.
        chunk_size: weights per chunk (the head is ``hidden x chunk_size``).
        chunk_dim: chunk embedding width.
        hidden: the RNN's state width (the authors': 96).
        cell: ``"lstm"`` (the authors') or ``"gru"``.

    Returns:
        ``HyperDNN(target, inputs=TaskEmbedding(num_tasks, emb_dim), outputs=ChunkWise(chunk_size,
        chunk_dim), body=RNN(hidden, cell))``: the RNN reads the tokens ``[e_task, e_chunk]`` in
        chunk order.
    """
    return HyperDNN(target, inputs=TaskEmbedding(num_tasks, emb_dim), outputs=ChunkWise(chunk_size, chunk_dim), body=RNN(hidden, cell))


def recurrent_parameters(model: HyperDNN) -> list[nn.Parameter]:
    """The hidden-to-hidden weights and biases (``weight_hh_l*``, ``bias_hh_l*``) of every RNN body
    in ``model``'s hypernetwork.

    Raises:
        HDTypeError: ``model`` is not a HyperDNN.
        ConfigError: its hypernetwork has no RNN body.
    """
    if not isinstance(model, HyperDNN):
        raise HDTypeError(f"recurrent_parameters: the model must be a hyperdnn.HyperDNN (got {type(model).__name__})")
    bodies = [m for m in model.hypernetwork.modules() if isinstance(m, RNNBody)]
    if not bodies:
        raise ConfigError("recurrent_parameters: the model's hypernetwork has no RNN body; build it with body=hd.RNN(...) (e.g. dependency_preserving_hnet)")
    return [p for b in bodies for n, p in b.rnn.named_parameters() if n.startswith(("weight_hh", "bias_hh"))]


def freeze_recurrent_(model: HyperDNN) -> int:
    """Stop training the RNN body's hidden-to-hidden weights (the authors' LSTM after the first task).

    Their gradients are no longer computed, so Adam leaves them (and ContinualLearning's
    look-ahead skips them). Returns the number of frozen numbers.
    """
    params = recurrent_parameters(model)
    for p in params:
        p.requires_grad_(False)
        p.grad = None
    return sum(p.numel() for p in params)
