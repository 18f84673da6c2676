"""HyperDNN: a hypernetwork and its target as one ``nn.Module``.

    y = F(x; H(c; phi))

The target stays an ordinary module run with ``torch.func.functional_call``
(one weight set) or through :mod:`hyperdnn.batched` (one weight set per sample
or per ensemble member); only phi and the target's own, non-generated
parameters are trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from .batched import call_batched, materialize, repeat_groups
from .conditioning import Condition
from .errors import HDTypeError, NonFiniteWeightsError, ShapeError
from .hypernetwork import HyperNetwork
from .outputs.low_rank import LowRankOutput
from .selection import Selector
from .summary import Summary, summarize
from .target import StaticCaller, TargetSpec, check_weights, prepare_target


def check_finite(theta: dict[str, Tensor]) -> None:
    """Raises ``NonFiniteWeightsError`` naming the first generated tensor that holds NaN or Inf."""
    for name, t in theta.items():
        if not torch.isfinite(t).all():
            bad = "NaN" if torch.isnan(t).any() else "Inf"
            raise NonFiniteWeightsError(f"HyperDNN: generated weight {name!r} holds {bad} values")


class HyperDNN(nn.Module):
    """A target network whose selected weights are made by a hypernetwork.

    Args:
        target: any ``nn.Module``; it is not modified (HyperDNN keeps a private copy
            in ``self.target`` whose generated parameters are empty slots).
        inputs: what H is conditioned on: ``TaskEmbedding``, ``External``,
            ``DataEncoder``, ``Noise``, ``Concat`` of these, or None (no condition).
        outputs: how theta is produced: ``GenerateOnce`` (default), ``MultiHead``,
            ``ComponentWise``, ``ChunkWise``, ``LowRank``, ``Additive``.
        body: H's architecture: ``MLP`` (default ``MLP(hidden=(100, 100))``), ``RNN``, ``Attention``.
        generate: which target parameters are generated: ``"all"`` (default), module
            types (``nn.Linear`` or a tuple), name patterns (``"fc*.weight"``), a callable
            ``(name, param) -> bool`` or a list of these.
        freeze: which of the remaining target parameters are frozen (same selectors).
        batch_dim: where the batch lives in the target's input (1 for sequence-first RNNs).
        check_finite: raise ``NonFiniteWeightsError`` naming the tensor if generated
            weights hold NaN/Inf (costs one reduction per tensor per call).
        init: the scale generated weights start at: ``"target"`` (default: the target's
            own init statistics, per tensor), ``"hyperfan-in"`` or ``"hyperfan-out"``
            (Chang et al. 2020: ``Var(theta) = 1/fan_in`` or ``1/fan_out``).

    Calling:
        ``model(x, task=3)`` (static condition) runs the target with one weight set;
        ``model(x, task=ids)`` with ``ids`` of shape ``(B,)`` (or ``DataEncoder``) makes one
        weight set per sample; ``model(x, samples=k)`` (``Noise``) returns ``(k, B, ...)``.
        Keywords that are not the inputs' keywords are passed to the target.

    Example:
        >>> model = HyperDNN(nn.Linear(4, 2), inputs=TaskEmbedding(3, 8), outputs=ChunkWise(4, 8))
        >>> model(torch.randn(5, 4), task=1).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        target: nn.Module,
        inputs: Any = None,
        outputs: Any = None,
        body: Any = None,
        generate: Selector = "all",
        freeze: Selector = None,
        batch_dim: int = 0,
        check_finite: bool = False,
        init: str = "target",
    ) -> None:
        super().__init__()
        if not isinstance(batch_dim, int) or isinstance(batch_dim, bool) or batch_dim < 0:
            raise HDTypeError(f"HyperDNN: batch_dim must be a non-negative int (got {batch_dim!r})")
        target_copy, spec, initial = prepare_target(target, generate, freeze)
        spec = spec.with_init(init)
        self.param_order = [n for n, _ in target.named_parameters()]
        self.target = target_copy
        self.spec: TargetSpec = spec
        self.hypernetwork = HyperNetwork(spec, inputs, outputs, body, initial)
        ref = next(iter(initial.values()))
        if not ref.is_meta:
            # The hypernetwork follows the target's device and floating dtype (e.g. a float64 target).
            self.hypernetwork.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        self.batch_dim = batch_dim
        self.check_finite = check_finite
        self.init_scheme = init
        self.configs = {"inputs": inputs, "outputs": outputs, "body": body}
        self.frozen = [n for n, p in self.target.named_parameters() if not p.requires_grad]
        self._call_static = StaticCaller(self.target, spec.names)

    # ------------------------------------------------------------ weights

    def condition(self, x: Any = None, **conditions: Any) -> Condition:
        """The condition embedding for a call (see ``hyperdnn.conditioning``)."""
        return self.hypernetwork.condition(x, conditions)

    def weights(self, x: Any = None, **conditions: Any) -> dict[str, Tensor]:
        """Generated weights ``{name: tensor}`` for a condition, with the target's exact shapes
        (plus a leading batch dimension for per-sample or ensemble conditions). Differentiable.

        ``x`` is needed only for a ``DataEncoder`` input.
        """
        theta = self.hypernetwork(self.condition(x, **conditions).z)
        if self.check_finite:
            check_finite(theta)
        return theta

    # ------------------------------------------------------------ running

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        keywords = self.hypernetwork.inputs.keywords
        conditions = {k: kwargs.pop(k) for k in keywords if k in kwargs}
        x = args[0] if args else None
        cond = self.hypernetwork.condition(x, conditions)
        if cond.mode == "static":
            theta = self.hypernetwork(cond.z)
            if self.check_finite:
                check_finite(theta)
            return self._static(theta, args, kwargs)
        theta = self._batched_weights(cond.z)
        if cond.mode == "per_sample":
            groups = cond.z.shape[0]
            self._check_batch(args, groups)
            return call_batched(self.target, theta, groups, args, kwargs, self.batch_dim, rows=groups,
                                aliases=self._call_static.aliases)
        return self._ensemble(theta, cond.z.shape[0], args, kwargs)

    def _batched_weights(self, z: Tensor) -> dict[str, Any]:
        """Weights for G conditions; low-rank outputs stay factored (Linear layers use them as is)."""
        outputs = self.hypernetwork.outputs
        if isinstance(outputs, LowRankOutput):
            theta: dict[str, Any] = {}
            for p, v in zip(self.spec.params, outputs.factors(z).values()):
                if isinstance(v, tuple) and len(p.shape) != 2:
                    v = materialize(v).unflatten(-1, p.shape[1:])
                theta[p.name] = v
            if self.check_finite:
                check_finite({f"{n}[{i}]" if isinstance(v, tuple) else n: t for n, v in theta.items()
                              for i, t in (enumerate(v) if isinstance(v, tuple) else [(0, v)])})
            return theta
        theta = self.hypernetwork(z)
        if self.check_finite:
            check_finite(theta)
        return theta

    def run_target(self, x: Any, weights: dict[str, Tensor], *args: Any, **kwargs: Any) -> Any:
        """Runs the target on ``(x, *args, **kwargs)`` with the given generated weights.

        Args:
            weights: ``{name: tensor}`` for every generated parameter, each of the
                parameter's shape (one weight set) or ``(G, *shape)`` (``G`` sets; the
                batch of ``x`` then holds ``G * n`` rows, group-major).
        """
        groups = check_weights(self.spec, weights)
        all_args = (x, *args)
        if groups is None:
            return self._static(weights, all_args, kwargs)
        rows = None
        if isinstance(x, Tensor):
            bd = self.batch_dim
            rows = x.shape[bd] if x.dim() > bd else 0
            if groups == 0 or rows == 0 or rows % groups:
                raise ShapeError(
                    f"HyperDNN.run_target: x has {rows} rows along dim {bd}; expected a positive multiple of "
                    f"the {groups} weight sets"
                )
        return call_batched(self.target, weights, groups, all_args, kwargs, self.batch_dim, rows=rows,
                            aliases=self._call_static.aliases)

    def _static(self, theta: dict[str, Tensor], args: tuple, kwargs: dict) -> Any:
        return self._call_static(theta, args, kwargs)

    def _check_batch(self, args: tuple, groups: int) -> None:
        x = args[0] if args else None
        if isinstance(x, Tensor):
            bd = self.batch_dim
            rows = x.shape[bd] if x.dim() > bd else None
            if rows != groups or groups == 0:
                raise ShapeError(
                    f"HyperDNN: the condition has a batch of {groups} but x has {rows} rows along dim {bd}; "
                    "a batched condition must give one row per sample"
                )

    def _ensemble(self, theta: dict[str, Tensor], k: int, args: tuple, kwargs: dict) -> Any:
        x = args[0] if args else None
        if not isinstance(x, Tensor):
            raise HDTypeError("HyperDNN: an ensemble call needs a tensor x as first argument")
        bd = self.batch_dim
        if x.dim() <= bd:
            raise ShapeError(f"HyperDNN: x of shape {tuple(x.shape)} has no batch dimension {bd}")
        rows = x.shape[bd]

        def rep(a):
            if isinstance(a, Tensor) and a.dim() > bd and a.shape[bd] == rows:
                return repeat_groups(a, k, bd)
            return a

        out = call_batched(self.target, theta, k, tree_map(rep, args), tree_map(rep, kwargs), bd, rows=k * rows,
                           aliases=self._call_static.aliases, per_group_stats=True)

        def unrep(o):
            if isinstance(o, Tensor) and o.dim() > bd and o.shape[bd] == k * rows:
                return o.unflatten(bd, (k, rows)).movedim(bd, 0)
            return o

        return tree_map(unrep, out)

    # ------------------------------------------------------------ reporting

    def summary(self) -> Summary:
        """Parameter counts (generated / own / frozen, hypernetwork) and the compression ratio."""
        return summarize(self)

    def extra_repr(self) -> str:
        return f"generated={len(self.spec.params)} tensors ({self.spec.numel:,} numbers), batch_dim={self.batch_dim}"
