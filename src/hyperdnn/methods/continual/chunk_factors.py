"""The output regularizer of a chunked hypernetwork at a cost that does not grow with the task count.

A chunked hypernetwork makes chunk ``c`` of task ``k``'s weights with one shared
linear head: ``o_kc = W~ h~_kc``, where ``W~ = [W, b]`` (``(S, d+1)``, ``S`` the
chunk size) and ``h~_kc = [body(e_k, c_c), 1]``. The stored targets were made the
same way when the task started, ``T_kc = W~0 h~0_kc``. So with ``D = W~ - W~0``
and ``delta_kc = h~_kc - h~0_kc``

    o_kc - T_kc = D h~_kc + W~0 delta_kc
    || o_kc - T_kc ||^2 = h~' (D'D) h~ + 2 h~' (D'W~0) delta + delta' (W~0'W~0) delta

and the sum over the ``S`` rows of a chunk is in three ``(d+1, d+1)`` Gram
matrices. ``D'D`` and ``D'W~0`` cost ``S (d+1)^2`` each per step whatever the number
of earlier tasks, ``W~0'W~0`` is fixed for the task; what grows with the tasks is
only the body on ``tasks x chunks`` tokens and ``(d+1)^2`` numbers per chunk. The
straightforward regularizer (:func:`~hyperdnn.methods.continual.regularizer.output_regularizer`
without factors) makes all ``S`` outputs of every chunk of every earlier task and
their gradients: about ``3 S (d+1)`` multiply-adds per chunk and task.

Written around ``D`` (the head's change since the task began) and ``delta`` rather
than as ``||o||^2 - 2 o'T + ||T||^2``, the sums stay of the size of the regularizer
itself, so fp32 rounding stays at the level of the straightforward formula's
(the tests compare both). The last chunk's rows past the target's size are left
out, as the hypernetwork drops them.

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.outputs.base import make_tokens
from hyperdnn.outputs.chunk_wise import ChunkWiseOutput


@dataclass(frozen=True)
class ChunkFactors:
    """The stored targets ``H*(e_k)`` of a chunked hypernetwork as the factors that made them.

    Attributes:
        weight: the head's weight ``W0`` when the targets were stored, ``(S, d)``.
        bias: the head's bias ``b0``, ``(S,)``, or None for a head without bias.
        hidden: ``h0``, the body's outputs for every earlier task and chunk, ``(K, C, d)``.
        rows: the rows of the last chunk that are target weights (``P - (C-1) S``).
        gram: ``W0' W0`` over all rows and over the last chunk's ``rows`` rows, ``(2, d, d)``.
    """

    weight: Tensor
    bias: Tensor | None
    hidden: Tensor
    rows: int
    gram: Tensor

    def state(self) -> dict[str, Tensor]:
        """The tensors to checkpoint (``gram`` and ``rows`` are recomputed on load)."""
        out = {"weight": self.weight, "hidden": self.hidden}
        return out if self.bias is None else {**out, "bias": self.bias}


def chunked_outputs(model: HyperDNN) -> ChunkWiseOutput | None:
    """The model's chunk-wise output module when its head is a linear layer, else None."""
    outputs = model.hypernetwork.outputs
    if isinstance(outputs, ChunkWiseOutput) and isinstance(outputs.head, nn.Linear):
        return outputs
    return None


def make_factors(weight: Tensor, bias: Tensor | None, hidden: Tensor, numel: int) -> ChunkFactors:
    """:class:`ChunkFactors` from the stored head ``(S, d)``, ``(S,)`` and body outputs ``(K, C, d)``.

    Args:
        weight: ``W0``.
        bias: ``b0`` or None.
        hidden: ``h0``.
        numel: the number of generated target weights ``P``.
    """
    if weight.dim() != 2 or hidden.dim() != 3 or hidden.shape[-1] != weight.shape[1] or (bias is not None and tuple(bias.shape) != weight.shape[:1]):
        raise ShapeError(f"chunk factors: weight must be (S, d), bias (S,) or None and hidden (K, C, d) (got {tuple(weight.shape)}, {None if bias is None else tuple(bias.shape)} and {tuple(hidden.shape)})")
    size, chunks = weight.shape[0], hidden.shape[1]
    rows = numel - (chunks - 1) * size
    if not 0 < rows <= size:
        raise ShapeError(f"chunk factors: {chunks} chunks of {size} do not make {numel} target weights")
    last, rest = weight.split([rows, size - rows])
    g_last = last.T @ last
    return ChunkFactors(weight, bias, hidden, rows, torch.stack([g_last + rest.T @ rest, g_last]))


@torch.no_grad()
def store_factors(model: HyperDNN, num_tasks: int) -> ChunkFactors | None:
    """The factors of ``H*(e_k)`` for ``k < num_tasks`` (call with :func:`store_targets`),
    or None when the model's outputs are not chunk-wise with a linear head.
    """
    outputs = chunked_outputs(model)
    if outputs is None:
        return None
    ids = torch.arange(num_tasks, device=outputs.head.weight.device)
    h = outputs.body(make_tokens(model.condition(task=ids).z, outputs.chunk_embeddings))  # (K, C, d)
    bias = None if outputs.head.bias is None else outputs.head.bias.detach().clone()
    return make_factors(outputs.head.weight.detach().clone(), bias, h.detach().clone(), model.spec.numel)


def factored_regularizer(model: HyperDNN, factors: ChunkFactors, ids: Tensor, delta: dict[str, Tensor] | None = None) -> Tensor:
    """``sum_{k in ids} || H(e_k) - H*(e_k) ||^2 / len(ids)`` from the factors (see the module).

    Args:
        model: the HyperDNN whose outputs made ``factors`` (chunk-wise, linear head).
        factors: from :func:`store_factors` when the targets were stored.
        ids: ``(n,)`` earlier tasks to regularize, ``n >= 1``.
        delta: optional look-ahead ``{name: Delta phi}`` for ``model.hypernetwork.outputs``
            parameters; ``H`` is evaluated at ``phi + Delta phi`` (a constant).

    Returns:
        A scalar.
    """
    outputs = chunked_outputs(model)
    if outputs is None:
        raise ConfigError("factored_regularizer: the model's outputs must be ChunkWise with a linear head (the factors came from another model)")
    if factors.hidden.shape[1] != outputs.num_chunks or factors.weight.shape[0] != outputs.chunk_size:
        raise ShapeError(f"factored_regularizer: the factors are for {factors.hidden.shape[1]} chunks of {factors.weight.shape[0]}, the model makes {outputs.num_chunks} of {outputs.chunk_size}")
    delta = delta or {}
    moved = {n: (p + delta[n].detach() if n in delta else p) for n, p in outputs.named_parameters() if not n.startswith("head.")}
    body = {n[len("body.") :]: p for n, p in moved.items() if n.startswith("body.")}
    tokens = make_tokens(model.condition(task=ids).z, moved["chunk_embeddings"])
    h = torch.func.functional_call(outputs.body, body, (tokens,))  # (n, C, d)
    dh = h - factors.hidden[ids]  # the body outputs' change
    # the head's change since the targets were stored, W + Delta W - W0, made with one new
    # (S, d) tensor (the head is most of the hypernetwork; each full-size temporary costs time)
    weight, bias = outputs.head.weight, outputs.head.bias
    d_w = weight - factors.weight if "head.weight" not in delta else weight + (delta["head.weight"].detach() - factors.weight)
    d_b = None
    if bias is not None and factors.bias is not None:
        d_b = bias - factors.bias if "head.bias" not in delta else bias + (delta["head.bias"].detach() - factors.bias)
    r = factors.rows
    size = d_w.shape[0]
    # D'D and D'W0 over all rows and over the last chunk's target rows, (2, d, d) each
    ww, ww0 = _GramPair.apply(d_w, factors.weight, r)
    if d_b is not None:
        dw_last, dw_rest = d_w.split([r, size - r])
        w0_last, w0_rest = factors.weight.split([r, size - r])
        db_last, db_rest = d_b.split([r, size - r])
        wb_last, w0b_last, bb_last = dw_last.T @ db_last, w0_last.T @ db_last, db_last @ db_last  # D'db, W0'db, db'db
        wb = torch.stack([wb_last + dw_rest.T @ db_rest, wb_last])
        w0b = torch.stack([w0b_last + w0_rest.T @ db_rest, w0b_last])
        bb = torch.stack([bb_last + db_rest @ db_rest, bb_last])
    total = h.new_zeros(())
    # o - T = D h + db + W0 dh per chunk; its squared norm summed over the rows, per chunk group
    for g, chunks in enumerate((slice(0, -1), slice(-1, None))):
        hg, dg = h[:, chunks], dh[:, chunks]
        total = total + torch.einsum("nci,ij,ncj->", hg, ww[g], hg)
        total = total + 2 * torch.einsum("nci,ij,ncj->", hg, ww0[g], dg)
        total = total + torch.einsum("nci,ij,ncj->", dg, factors.gram[g], dg)
        if d_b is not None:
            total = total + 2 * (hg @ wb[g]).sum() + 2 * (dg @ w0b[g]).sum() + hg.shape[0] * hg.shape[1] * bb[g]
    return total / ids.shape[0]


class _GramPair(torch.autograd.Function):
    """``(D'D, D'W0)`` over all rows and over the first ``r`` rows, each ``(2, d, d)``, for
    ``D`` ``(S, d)`` and a constant ``W0``. Written out because autograd's backward of
    ``D'D`` takes two products with ``D`` and a full-size sum; this one writes the
    gradient ``D (G + G') + W0 H'`` with two products per row block into one tensor."""

    @staticmethod
    def forward(ctx, d: Tensor, w0: Tensor, r: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        size = d.shape[0]
        d_last, d_rest = d.split([r, size - r])
        w0_last, w0_rest = w0.split([r, size - r])
        dd_last, dw_last = d_last.T @ d_last, d_last.T @ w0_last
        ctx.save_for_backward(d, w0)
        ctx.r = r
        return torch.stack([dd_last + d_rest.T @ d_rest, dd_last]), torch.stack([dw_last + d_rest.T @ w0_rest, dw_last])

    @staticmethod
    def backward(ctx, g_dd: Tensor, g_dw: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        d, w0 = ctx.saved_tensors
        r, size = ctx.r, d.shape[0]
        sym = g_dd + g_dd.transpose(1, 2)  # d(x'Gx)/dx = (G + G')x
        grad = torch.empty_like(d)
        # rows of the last chunk's targets count in both Gram matrices of each pair, the rest in the first
        torch.mm(d[:r], sym[0] + sym[1], out=grad[:r])
        grad[:r].addmm_(w0[:r], (g_dw[0] + g_dw[1]).T)
        torch.mm(d[r:], sym[0], out=grad[r:])
        grad[r:].addmm_(w0[r:], g_dw[0].T)
        return grad, None, None
