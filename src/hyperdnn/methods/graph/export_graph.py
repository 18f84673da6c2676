"""The graph of a model fx cannot trace, read with ``torch.export`` from example inputs.

``torch.export`` runs the model's forward on fake tensors (the meta device works too) and
records every ATen operation; each recorded node carries ``nn_module_stack``, the chain of
module calls it was made in. :func:`export_graph` maps that ATen graph back to the node
and edge kinds :func:`~hyperdnn.methods.graph.graph_of` gives through ``torch.fx``:

- every call of a *unit* module becomes one node holding the module's parameters: a
  ``torch.nn`` layer (what fx keeps as a leaf: ``nn.Linear``, ``nn.LayerNorm``,
  ``nn.MultiheadAttention`` with its ``out_proj`` ...), a module without children
  (HuggingFace's ``Conv1D``, ``NewGELUActivation``) or a class in ``leaf_modules``; the
  outermost such module of a node's stack is the one it belongs to;
- every other ATen op is one node (``add`` for a residual add, ``split``/``getitem``,
  ``view``, ``scaled_dot_product_attention`` ...), its kind read from the op's name;
- a parameter read outside a unit module is a ``param`` node, as fx's ``get_attr``;
- edges are the data flow between those nodes (inside a unit module none are kept);
- what fx's graph does not hold is dropped: computations that depend on no input and no
  parameter (position ids from ``arange``, causal masks built from shapes, the
  counterpart of fx's shape arithmetic), nodes whose values never reach the output
  (assertions), and dtype/device conversions and aliases (their edges pass through).

transformers 5 ships no fx tracer, so this is the exact graph of HuggingFace models (e.g.
``GPT2LMHeadModel``); outputs ``torch.export`` cannot flatten (a ``DynamicCache``) are
left out of the exported outputs.
"""

from __future__ import annotations

import heapq
import traceback
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn

from hyperdnn.errors import ConfigError, HDTypeError

from .graph import (
    GraphNode,
    ModelGraph,
    function_kind,
    module_kind,
    owned_params,
    require_all_owned,
)

# ATen ops whose names are not in graph.py's table of fx function names.
_ATEN_KINDS: dict[str, str] = {
    "addmm": "linear", "convolution": "conv", "conv3d": "conv", "native_layer_norm": "layer_norm",
    "rms_norm": "layer_norm", "group_norm": "group_norm", "native_batch_norm": "batch_norm",
    "_native_batch_norm_legit": "batch_norm", "_native_batch_norm_legit_functional": "batch_norm",
    "_native_batch_norm_legit_no_training": "batch_norm", "_softmax": "softmax", "_log_softmax": "softmax",
    "baddbmm": "matmul", "einsum": "matmul", "unsqueeze": "reshape", "squeeze": "reshape", "expand": "reshape",
    "t": "reshape", "_unsafe_view": "reshape", "slice": "select", "select": "select", "index": "select",
    "split_with_sizes": "select", "unbind": "select", "max_pool2d_with_indices": "pool", "rsub": "add",
}
# Dtype/device conversions and aliases: contracted (their input's node stands for them).
_PASS_THROUGH = frozenset({"to", "_to_copy", "alias", "detach", "lift_fresh_copy", "clone"})
_WRAP = "model"  # the wrapped model's attribute name (see _TensorOutputs)


class _TensorOutputs(nn.Module):
    """``model``'s call with only the tensors of its output kept (``torch.export`` cannot return a cache object)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        return tuple(_tensors(self.model(*args, **kwargs)))


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # HuggingFace's ModelOutput is a dict
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _tensors(v)]
    return []


def _op_name(target: Any) -> str:
    name = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


def _unit(module: nn.Module, leaves: tuple[type, ...]) -> bool:
    """A module that is one node of the graph (see the module docstring)."""
    return (isinstance(module, leaves) or fx.Tracer().is_leaf_module(module, "")
            or not any(True for _ in module.children()))


def _where(err: BaseException) -> str:
    """``file:line `code``` of the innermost frame of the traceback outside torch (the op that failed)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/torch/" not in f.filename.replace("\\", "/")]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} `{(f.line or '').strip()}`"


def export_graph(model: nn.Module, example_inputs: tuple, example_kwargs: dict | None = None, *,
                 leaf_modules: Iterable[type] = ()) -> ModelGraph:
    """The computational graph of ``model``, read with ``torch.export`` from example inputs.

    Args:
        model: any ``nn.Module`` ``torch.export`` can export (its parameters may be on the meta device).
        example_inputs: positional arguments of one forward call, e.g. ``(input_ids,)`` with
            ``input_ids (B, T)``; on the model's device.
        example_kwargs: keyword arguments of that call.
        leaf_modules: extra module classes kept as single nodes.

    Returns:
        a :class:`ModelGraph` with the node and edge kinds of :func:`graph_of`'s fx graph;
        every parameter is owned by exactly one node.

    Raises:
        HDTypeError: ``model`` is no ``nn.Module`` or ``example_inputs`` no tuple.
        ConfigError: ``torch.export`` fails (the message names the module whose forward
            failed and the line of code), or a parameter is used by no node.
    """
    if not isinstance(model, nn.Module):
        raise HDTypeError(f"export_graph: model must be a torch.nn.Module (got {type(model).__name__})")
    if not isinstance(example_inputs, tuple):
        raise HDTypeError(f"export_graph: example_inputs must be a tuple of forward arguments "
                          f"(got {type(example_inputs).__name__}); e.g. (input_ids,)")
    wrapped, stack = _TensorOutputs(model), []

    def enter(path: str) -> Any:
        return lambda module, args: stack.append(path)  # returns None: the input is unchanged

    def leave(module: nn.Module, args: Any, out: Any) -> None:  # not called when forward raises
        stack.pop()

    # The module stack at the failure names the failing module (hooks run in a non-strict export).
    hooks = [h for path, mod in model.named_modules()
             for h in (mod.register_forward_pre_hook(enter(path)), mod.register_forward_hook(leave))]
    try:
        exported = torch.export.export(wrapped, example_inputs, example_kwargs or {}, strict=False)
    except Exception as err:  # export raises many types (guards on data, unsupported ops, ...)
        where = stack[-1] if stack else ""
        part = (f"module {where!r} ({type(model.get_submodule(where)).__name__})" if where
                else f"the forward of {type(model).__name__}")
        first = next((line for line in str(err).splitlines() if line.strip()), "")
        raise ConfigError(
            f"export_graph: torch.export cannot export {part}{_where(err)}: {type(err).__name__}: {first}; "
            "fix: make that code free of data-dependent control flow and of conversions to Python or NumPy values, "
            "pass that module's class in leaf_modules= to graph_of (fx then keeps it as one node), or use "
            "module_chain_graph(model) for an approximate graph read from the module tree alone"
        ) from err
    finally:
        for h in hooks:
            h.remove()
    return _from_export(model, exported, tuple(leaf_modules))


def _from_export(model: nn.Module, exported: Any, leaves: tuple[type, ...]) -> ModelGraph:
    sig = exported.graph_signature
    prefix = _WRAP + "."
    strip = lambda name: name.removeprefix(prefix)
    param_of = {ph: strip(fqn) for ph, fqn in sig.inputs_to_parameters.items()}
    buffer_of = {ph: strip(fqn) for ph, fqn in sig.inputs_to_buffers.items()}
    user_inputs = set(sig.user_inputs)
    params = dict(model.named_parameters())
    canonical = {id(p): n for n, p in params.items()}
    # export gives every name of a tied tensor its own placeholder; named_parameters() keeps only the first.
    every_name = dict(model.named_parameters(remove_duplicate=False))
    graph = exported.graph
    order = list(graph.nodes)
    output = next(n for n in order if n.op == "output")

    # Live: depends on a tensor input, a parameter or a buffer. Reaching: its value reaches the output.
    live: set[fx.Node] = set()
    for n in order:
        if n.op == "placeholder":
            if n.name in param_of or n.name in buffer_of or (
                    n.name in user_inputs and isinstance(n.meta.get("val"), torch.Tensor)):
                live.add(n)
        elif n.op == "call_function" and any(a in live for a in n.all_input_nodes):
            live.add(n)
    reaching: set[fx.Node] = {output}
    for n in reversed(order):
        if n in reaching:
            reaching.update(n.all_input_nodes)

    is_unit: dict[str, bool] = {}  # module path -> is it one node

    def unit_of(n: fx.Node) -> tuple[str, str] | None:
        """(nn_module_stack key of the call, module path) of the outermost unit module ``n`` was made in."""
        for key, (path, _) in (n.meta.get("nn_module_stack") or {}).items():
            # The wrapper's own entries ("" and "model") are tested before the prefix is cut, so a
            # child of the user's model that is itself called "model" is not mistaken for the wrapper.
            if not path.startswith(prefix):
                continue
            path = path[len(prefix):]
            if path not in is_unit:
                is_unit[path] = _unit(model.get_submodule(path), leaves)
            if is_unit[path]:
                return key, path
        return None

    nodes: list[GraphNode] = []
    edges: set[tuple[int, int]] = set()
    index: dict[Any, int] = {}  # fx node, ("unit", key) or ("param", name) -> graph node id
    alias: dict[fx.Node, fx.Node] = {}
    names: dict[str, int] = {}

    def add(key: Any, node: GraphNode) -> int:
        count = names.get(node.name, 0)
        names[node.name] = count + 1
        if count:
            node = GraphNode(f"{node.name}_{count}", node.kind, node.module, node.params, node.cls)
        index[key] = len(nodes)
        nodes.append(node)
        return index[key]

    def source(a: fx.Node) -> int | None:
        a = alias.get(a, a)
        if a in index:
            return index[a]
        if a.name in param_of and a in live:  # a parameter read outside any unit module: fx's get_attr
            name = canonical[id(every_name[param_of[a.name]])]
            key = ("param", name)
            if key not in index:
                add(key, GraphNode(name.replace(".", "_"), "param", None, ((name, tuple(params[name].shape)),)))
            return index[key]
        if a.name in buffer_of and a in live:
            key = ("param", buffer_of[a.name])
            if key not in index:
                add(key, GraphNode(buffer_of[a.name].replace(".", "_"), "param"))
            return index[key]
        return None

    for n in order:
        if n.op == "placeholder":
            if n.name in user_inputs and n in live:
                add(n, GraphNode(n.name, "input"))
            continue
        if n.op == "output":
            out = add(n, GraphNode("output", "output"))
            for a in n.all_input_nodes:
                s = source(a)
                if s is not None:
                    edges.add((s, out))
            continue
        if n.op != "call_function" or n not in live or n not in reaching:
            continue
        unit = unit_of(n)
        op = _op_name(n.target)
        if unit is None and op in _PASS_THROUGH and n.all_input_nodes:
            alias[n] = alias.get(n.all_input_nodes[0], n.all_input_nodes[0])
            continue
        srcs = [s for s in (source(a) for a in n.all_input_nodes if not (unit and _internal(a, param_of, buffer_of)))
                if s is not None]
        if unit is not None:
            key, path = unit
            if ("unit", key) not in index:
                sub = model.get_submodule(path)
                add(("unit", key), GraphNode(path.replace(".", "_"), module_kind(sub), path, (), type(sub).__name__))
            me = index[("unit", key)]
            index[n] = me
        else:
            me = add(n, GraphNode(n.name, _ATEN_KINDS.get(op) or function_kind(op)))
        edges.update((s, me) for s in srcs if s != me)
    return _ordered(model, nodes, edges, params, canonical)


def _internal(a: fx.Node, param_of: dict, buffer_of: dict) -> bool:
    """A parameter or buffer read inside a unit module: part of that module's node, no edge."""
    return a.op == "placeholder" and (a.name in param_of or a.name in buffer_of)


def _ordered(model: nn.Module, nodes: list[GraphNode], edges: set[tuple[int, int]], params: dict,
             canonical: dict) -> ModelGraph:
    """Nodes renumbered topologically (stable: creation order among ready nodes), parameters given to units."""
    succ: dict[int, list[int]] = {}
    indeg = [0] * len(nodes)
    for s, d in edges:
        succ.setdefault(s, []).append(d)
        indeg[d] += 1
    ready = sorted(i for i in range(len(nodes)) if indeg[i] == 0)
    order: list[int] = []
    heapq.heapify(ready)
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for d in succ.get(i, ()):
            indeg[d] -= 1
            if indeg[d] == 0:
                heapq.heappush(ready, d)
    if len(order) != len(nodes):
        cyc = [nodes[i].name for i in range(len(nodes)) if i not in set(order)][:3]
        raise ConfigError(f"export_graph: the module calls of {type(model).__name__} form a cycle (at {cyc}); "
                          "pass the modules involved in leaf_modules= or use module_chain_graph(model)")
    new = {old: k for k, old in enumerate(order)}
    owned: set[str] = set()
    out: list[GraphNode] = []
    for old in order:
        node = nodes[old]
        if node.module is not None:
            own = owned_params(model.get_submodule(node.module), params, canonical, owned)
            node = GraphNode(node.name, node.kind, node.module, own, node.cls)
        elif node.params:
            node = GraphNode(node.name, node.kind, None, tuple(p for p in node.params if p[0] not in owned))
        owned.update(n for n, _ in node.params)
        out.append(node)
    require_all_owned(model, params, owned, "export_graph",
                      "its exported graph (their values never reach the output)")
    return ModelGraph(tuple(out), tuple(sorted((new[s], new[d]) for s, d in edges)))
