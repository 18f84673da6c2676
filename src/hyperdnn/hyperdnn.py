"""HyperDNN: a hypernetwork and its target as one ``nn.Module``.

    y = F(x; H(c; phi))

The target stays an ordinary module. Generated weights enter it one way, through
:class:`~hyperdnn.weight_slots.WeightSlots` (``functional_call`` semantics: in
place for the call, restored in ``finally``): one weight set runs the module's
own forward; one weight set per sample or per ensemble member runs the batched
rules of :mod:`hyperdnn.batched` inside the same mechanism. Only phi and the
target's own, non-generated parameters are trained.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from .batched import call_batched, repeat_groups
from .batched.members import has_training_batchnorm, members_per_call, one_group, one_set_as_group, take_groups
from .conditioning import Condition
from .dynamic_target import DynamicTargets, TargetView, module_kinds, pop_target
from .errors import ConfigError, HDTypeError, NonFiniteWeightsError, ShapeError
from .hypernetwork import HyperNetwork
from .factored import Factored, densify
from .selection import Selector
from .summary import Summary, summarize
from .target import TargetSpec, check_weights, prepare_target
from .weight_slots import WeightSlots


def require_finite(weights: dict[str, Tensor | Factored]) -> None:
    """Raises ``NonFiniteWeightsError`` naming the first generated tensor that holds NaN or Inf.

    Args:
        weights: ``{name: tensor}`` as returned by ``HyperDNN.weights``; ``Factored``
            values are checked part by part (``name[A]``, ``name[B]``, ``name[base]``).
    """
    for name, w in weights.items():
        parts = {f"{name}[{role}]": t for role, t in w.parts().items()} if isinstance(w, Factored) else {name: w}
        for label, t in parts.items():
            if not torch.isfinite(t).all():
                bad = "NaN" if torch.isnan(t).any() else "Inf"
                raise NonFiniteWeightsError(f"HyperDNN: generated weight {label!r} holds {bad} values")


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
        ``model(x, target=module)`` runs ``module`` (another width of the trained family)
        with weights made for it (dynamic outputs; see :mod:`hyperdnn.dynamic_target`).

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
        if not isinstance(check_finite, bool):
            raise HDTypeError(f"HyperDNN: check_finite must be True or False (got {check_finite!r})")
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
        self._slots = WeightSlots(self.target, spec.names)
        self._target_keywords = _keywords_of(self.target)
        self._dynamic = DynamicTargets(self.hypernetwork.outputs, generate, module_kinds(self.target, spec.names))

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "target" and "target" in self._modules:
            raise ConfigError(
                "HyperDNN: the target cannot be replaced after construction (its generated slots, spec and "
                "hypernetwork heads belong to the first one); build a new HyperDNN(new_target, ...) instead"
            )
        super().__setattr__(name, value)

    # ------------------------------------------------------------ weights

    def condition(self, x: Any = None, **conditions: Any) -> Condition:
        """The condition embedding for a call: ``Condition(z, mode)``, ``z`` of shape
        ``(dim,)`` (static) or ``(G, dim)`` (per-sample or ensemble).

        Args:
            x: the target's input (read only by a ``DataEncoder`` input).
            **conditions: the inputs' keywords, e.g. ``task=3``.
        """
        return self.hypernetwork.condition(x, **conditions)

    def weights(self, x: Any = None, *, dense: bool = True, target: nn.Module | None = None,
                **conditions: Any) -> dict[str, Any]:
        """Generated weights ``{name: tensor}`` for a condition, with the target's exact shapes
        (plus a leading batch dimension for per-sample or ensemble conditions). Differentiable.

        Args:
            x: needed only for a ``DataEncoder`` input.
            dense: ``True`` (default) forms every tensor; ``False`` returns low-rank
                weights as ``hd.Factored`` values (``base + scale * A B^T``), as the
                output strategy made them.
            target: a module of the trained family whose weights to make instead of the
                construction target's (dynamic outputs; needs ``outputs=hd.Implicit(...)``).
            **conditions: the inputs' keywords, e.g. ``task=3``.
        """
        entry = None if target is None else self._dynamic.resolve(target, self.target)
        theta = self._generate(self.condition(x, **conditions).z, entry)
        return densify(theta) if dense else theta

    def _generate(self, z: Tensor, entry: Any = None) -> dict[str, Any]:
        theta = self.hypernetwork(z) if entry is None else self._dynamic.generate(z, entry)
        if self.check_finite:
            require_finite(theta)
        return theta

    # ------------------------------------------------------------ running

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        keywords = self.hypernetwork.inputs.keywords
        conditions = {k: kwargs.pop(k) for k in keywords if k in kwargs}
        dynamic = pop_target(kwargs)  # a call-time target (dynamic outputs)
        entry = None if dynamic is None else self._dynamic.resolve(dynamic, self.target)
        slots = self._slots if entry is None else entry.slots
        if kwargs:
            self._check_target_keywords(kwargs)
        x = args[0] if args else None
        cond = self.hypernetwork.condition(x, **conditions)
        theta = self._generate(cond.z, entry)
        if cond.mode == "static":
            return self._run_static(slots, theta, args, kwargs)
        if cond.mode == "per_sample":
            groups = cond.z.shape[0]
            self._check_batch(args, groups)
            return call_batched(slots, theta, groups, args, kwargs, self.batch_dim, rows=groups)
        return self._ensemble(theta, cond.z.shape[0], args, kwargs, slots)

    def run_target(self, x: Any, weights: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Runs the target on ``(x, *args, **kwargs)`` with the given generated weights.

        A keyword ``target=module`` (an ``nn.Module``) runs that call-time target instead,
        with weights from ``weights(target=module)``.

        Args:
            weights: ``{name: tensor}`` for every generated parameter, each of the
                parameter's shape (one weight set) or ``(G, *shape)`` (``G`` sets; the
                batch of ``x`` then holds ``G * n`` rows, group-major); ``hd.Factored``
                values are accepted too (``model.weights(..., dense=False)``).
        """
        dynamic = pop_target(kwargs)
        entry = None if dynamic is None else self._dynamic.resolve(dynamic, self.target)
        slots = self._slots if entry is None else entry.slots
        groups = check_weights(self.spec if entry is None else entry.spec, weights)
        all_args = (x, *args)
        if groups is None:
            return self._run_static(slots, weights, all_args, kwargs)
        rows = None
        if isinstance(x, Tensor):
            bd = self.batch_dim
            rows = x.shape[bd] if x.dim() > bd else 0
            if groups == 0 or rows == 0 or rows % groups:
                raise ShapeError(
                    f"HyperDNN.run_target: x has {rows} rows along dim {bd}; expected a positive multiple of "
                    f"the {groups} weight sets"
                )
        return call_batched(slots, weights, groups, all_args, kwargs, self.batch_dim, rows=rows)

    def _run_static(self, slots: WeightSlots, theta: dict[str, Any], args: tuple, kwargs: dict) -> Any:
        """One weight set: the target's own forward on formed weights, except in training with a
        factored weight that drops its low-rank branch's input (``Factored.dropout``), which only
        the factored Linear/Conv paths can do: then one group through :func:`call_batched`."""
        dropping = self.training and any(isinstance(v, Factored) and v.dropout > 0 for v in theta.values())
        if not dropping:
            return slots.run(densify(theta), args, kwargs)
        one = {n: one_set_as_group(v) for n, v in theta.items()}
        x = args[0] if args else None
        bd = self.batch_dim
        rows = x.shape[bd] if isinstance(x, Tensor) and x.dim() > bd else None
        return call_batched(slots, one, 1, args, kwargs, bd, rows=rows)

    def _check_target_keywords(self, kwargs: dict[str, Any]) -> None:
        params, open_ended = self._target_keywords
        if open_ended:
            return
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            ours = list(self.hypernetwork.inputs.keywords)
            near = difflib.get_close_matches(unknown[0], ours + sorted(params), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise HDTypeError(
                f"HyperDNN: keyword {unknown[0]!r} belongs to no input of this model (its inputs take: "
                f"{', '.join(ours) or 'no keyword'}) and is no argument of the target's forward "
                f"({', '.join(sorted(params)) or 'none'}){hint}"
            )

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

    def _ensemble(self, theta: dict[str, Any], k: int, args: tuple, kwargs: dict, slots: WeightSlots) -> Any:
        x = args[0] if args else None
        if not isinstance(x, Tensor):
            raise HDTypeError("HyperDNN: an ensemble call needs a tensor x as first argument")
        bd = self.batch_dim
        if x.dim() <= bd:
            raise ShapeError(f"HyperDNN: x of shape {tuple(x.shape)} has no batch dimension {bd}")
        rows = x.shape[bd]
        # Inference may run members in chunks (one member: the target's own forward);
        # gradients and training-mode BatchNorm keep one call, so training is unchanged.
        per_call = members_per_call(k, rows, x.device) if not torch.is_grad_enabled() else k
        if (per_call < k or (k == 1 and not torch.is_grad_enabled())) and not has_training_batchnorm(slots.target):
            chunked = self._ensemble_in_chunks(theta, k, per_call, args, kwargs, slots)
            if chunked is not None:
                return chunked
        return self._ensemble_call(theta, k, args, kwargs, slots)

    def _ensemble_in_chunks(self, theta: dict[str, Any], k: int, per_call: int, args: tuple, kwargs: dict,
                            slots: WeightSlots) -> Tensor | None:
        # See batched/members.py for when chunks are faster than one call.
        outs = []
        for start in range(0, k, per_call):
            stop = min(start + per_call, k)
            if stop - start == 1:
                out = self._run_static(slots, one_group(theta, start), args, kwargs)
                out = out.unsqueeze(0) if isinstance(out, Tensor) else out
            else:
                out = self._ensemble_call(take_groups(theta, start, stop), stop - start, args, kwargs, slots)
            if not isinstance(out, Tensor):
                return None  # a structured output: one call for all members
            outs.append(out)
        return torch.cat(outs)

    def _ensemble_call(self, theta: dict[str, Any], k: int, args: tuple, kwargs: dict, slots: WeightSlots) -> Any:
        bd = self.batch_dim
        rows = args[0].shape[bd]

        def rep(a):
            if isinstance(a, Tensor) and a.dim() > bd and a.shape[bd] == rows:
                return repeat_groups(a, k, bd)
            return a

        out = call_batched(slots, theta, k, tree_map(rep, args), tree_map(rep, kwargs), bd, rows=k * rows,
                           per_group_stats=True)

        def unrep(o):
            if isinstance(o, Tensor) and o.dim() > bd and o.shape[bd] == k * rows:
                return o.unflatten(bd, (k, rows)).movedim(bd, 0)
            return o

        return tree_map(unrep, out)

    # ------------------------------------------------------------ reporting

    def summary(self, target: nn.Module | None = None) -> Summary:
        """Parameter counts (generated / own / frozen, hypernetwork) and the size ratio
        ``hypernetwork / generated`` (below 1: the hypernetwork is smaller than what it makes),
        for the construction target or a call-time ``target`` of the trained family."""
        return summarize(self if target is None else TargetView(self, self._dynamic.resolve(target, self.target)))

    def extra_repr(self) -> str:
        return f"generated={len(self.spec.params)} tensors ({self.spec.numel:,} numbers), batch_dim={self.batch_dim}"


def _keywords_of(target: nn.Module) -> tuple[frozenset[str], bool]:
    """The keyword arguments the target's forward takes, and whether it takes any (``**kwargs``)."""
    try:
        sig = inspect.signature(target.forward)
    except (TypeError, ValueError):
        return frozenset(), True
    params = sig.parameters.values()
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = frozenset(p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                          inspect.Parameter.KEYWORD_ONLY))
    return names, open_ended
