"""The computational graph of an ``nn.Module``: nodes, data-flow edges, GHN-2's virtual edges.

:func:`graph_of` reads the graph with ``torch.fx``: one node per fx node (inputs,
modules, functions, methods, parameters read directly, the output), an edge from
every node to each node that consumes its value. A module that owns parameters is
one node holding all of them (``nn.MultiheadAttention`` is one ``attention`` node
with its four tensors); nodes are numbered in fx's order, which is topological.

transformers 5 no longer ships its fx tracer (``transformers.utils.fx`` is gone), and
plain ``torch.fx`` cannot trace a HuggingFace model's forward (keyword plumbing, caches).
For such models :func:`module_chain_graph` builds the graph the parameter prediction
needs from the module tree alone: the parameterised leaf modules in registration
order, each fed by the one before. It is an approximation (no residual edges) and
says so in its name; :func:`graph_of` never falls back to it silently.

Virtual edges (Knyazev et al. 2021, "Parameter Prediction for Unseen Deep
Architectures", section 4, eq. 4 and ppuda's ``Graph._add_virtual_edges``) join
``u -> v`` when the directed shortest path from ``u`` to ``v`` has length
``2 <= s <= s_max``; the gated GNN weighs their messages by ``1 / s``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from torch import Tensor, fx, nn

from hyperdnn.errors import ConfigError, HDTypeError

# The operation kinds a node can have (the GHN's node-type vocabulary). "other" covers the rest.
NODE_KINDS: tuple[str, ...] = (
    "input", "output", "param", "linear", "conv", "batch_norm", "layer_norm", "group_norm", "embedding",
    "attention", "relu", "gelu", "tanh", "sigmoid", "silu", "softmax", "add", "mul", "matmul", "cat",
    "pool", "reshape", "select", "dropout", "other",
)

_MODULE_KINDS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((nn.Linear, nn.Bilinear), "linear"),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "conv"),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), "batch_norm"),
    ((nn.LayerNorm, nn.RMSNorm), "layer_norm"),
    ((nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d), "group_norm"),
    ((nn.Embedding, nn.EmbeddingBag), "embedding"),
    ((nn.MultiheadAttention,), "attention"),
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU), "relu"),
    ((nn.GELU,), "gelu"),
    ((nn.Tanh,), "tanh"),
    ((nn.Sigmoid,), "sigmoid"),
    ((nn.SiLU,), "silu"),
    ((nn.Softmax, nn.LogSoftmax), "softmax"),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
      nn.AdaptiveMaxPool2d), "pool"),
    ((nn.Flatten, nn.Unflatten), "reshape"),
    ((nn.Dropout, nn.Dropout1d, nn.Dropout2d), "dropout"),
)

# Class names of modules outside torch.nn that behave like one of the kinds (HuggingFace's GPT-2 Conv1D
# is a Linear with its weight stored transposed).
_NAMED_KINDS = {"Conv1D": "linear", "NewGELUActivation": "gelu", "GELUActivation": "gelu"}

_FUNCTION_KINDS: dict[str, str] = {
    "relu": "relu", "relu_": "relu", "leaky_relu": "relu", "gelu": "gelu", "tanh": "tanh", "sigmoid": "sigmoid",
    "silu": "silu", "softmax": "softmax", "log_softmax": "softmax", "add": "add", "iadd": "add", "sub": "add",
    "mul": "mul", "imul": "mul", "truediv": "mul", "div": "mul", "matmul": "matmul", "bmm": "matmul",
    "mm": "matmul", "linear": "linear", "conv1d": "conv", "conv2d": "conv", "cat": "cat", "concat": "cat",
    "stack": "cat", "max_pool1d": "pool", "max_pool2d": "pool", "avg_pool2d": "pool", "adaptive_avg_pool2d": "pool",
    "mean": "pool", "amax": "pool", "sum": "pool", "flatten": "reshape", "view": "reshape", "reshape": "reshape",
    "permute": "reshape", "transpose": "reshape", "contiguous": "reshape", "unflatten": "reshape",
    "getitem": "select", "chunk": "select", "split": "select", "dropout": "dropout",
    "scaled_dot_product_attention": "attention", "layer_norm": "layer_norm", "batch_norm": "batch_norm",
    "embedding": "embedding",
}


@dataclass(frozen=True)
class GraphNode:
    """One node of a model graph.

    Attributes:
        name: the fx node's name (or the module path in a chain graph).
        kind: one of :data:`NODE_KINDS`.
        module: path of the module the node calls (``""`` for the root), ``None`` for other nodes.
        params: ``((parameter name, shape), ...)`` of the parameters this node owns, in the
            module's order, full names as in ``model.named_parameters()``.
        cls: class name of the called module (``""`` for other nodes).
    """

    name: str
    kind: str
    module: str | None = None
    params: tuple[tuple[str, tuple[int, ...]], ...] = ()
    cls: str = ""


@dataclass(frozen=True)
class ModelGraph:
    """A model's computational graph, nodes in topological order.

    Attributes:
        nodes: the nodes.
        edges: ``((src, dst), ...)`` data-flow edges (``src < dst``).
        approximate: True for a :func:`module_chain_graph` (the module tree, not the data flow).
    """

    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[int, int], ...]
    approximate: bool = False
    _succ: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        bad = [(s, d) for s, d in self.edges if not 0 <= s < d < len(self.nodes)]
        if bad:
            raise ConfigError(f"ModelGraph: edges must go from a lower to a higher node index below {len(self.nodes)} "
                              f"(nodes in topological order) (got {bad[:3]})")
        succ: list[list[int]] = [[] for _ in self.nodes]
        for s, d in self.edges:
            succ[s].append(d)
        object.__setattr__(self, "_succ", tuple(tuple(x) for x in succ))

    @property
    def kinds(self) -> list[str]:
        return [n.kind for n in self.nodes]

    def successors(self, i: int) -> tuple[int, ...]:
        return self._succ[i]

    def param_names(self) -> list[str]:
        """Every parameter the graph's nodes own, in node order."""
        return [name for node in self.nodes for name, _ in node.params]

    def shortest_paths(self, s_max: int) -> dict[tuple[int, int], int]:
        """``{(u, v): s}`` for every ``v`` reachable from ``u`` in ``1 <= s <= s_max`` directed steps (BFS)."""
        out: dict[tuple[int, int], int] = {}
        for u in range(len(self.nodes)):
            dist = {u: 0}
            queue = deque([u])
            while queue:
                x = queue.popleft()
                if dist[x] == s_max:
                    continue
                for y in self._succ[x]:
                    if y not in dist:
                        dist[y] = dist[x] + 1
                        queue.append(y)
            out.update({(u, v): s for v, s in dist.items() if s > 0})
        return out

    def virtual_edges(self, s_max: int) -> list[tuple[int, int, int]]:
        """GHN-2's edges with their lengths: ``[(u, v, s)]``, the real edges (``s = 1``) and the
        virtual ones (``2 <= s <= s_max``), sorted.

        Args:
            s_max: the largest shortest-path distance joined (GHN-2 uses 50; 1 means real edges only).
        """
        if s_max < 1:
            raise ConfigError(f"ModelGraph.virtual_edges: s_max must be >= 1 (got {s_max})")
        return sorted((u, v, s) for (u, v), s in self.shortest_paths(s_max).items())


def module_kind(module: nn.Module) -> str:
    """The node kind of a module (``"other"`` when it is none of the known ones)."""
    for types, kind in _MODULE_KINDS:
        if isinstance(module, types):
            return kind
    return _NAMED_KINDS.get(type(module).__name__, "other")


def function_kind(target: Any) -> str:
    """The node kind of a function, method or op name (``"other"`` when none of the known ones)."""
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    return _FUNCTION_KINDS.get(name.strip("_") if name.startswith("__") else name, "other")


class _PathTracer(fx.Tracer):
    """An fx tracer that remembers which module it was inside when tracing failed."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves
        self.stack: list[str] = []
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        self.stack.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.stack[-1]
            raise
        finally:
            self.stack.pop()


def graph_of(model: nn.Module, *, leaf_modules: Iterable[type] = (), example_inputs: tuple | None = None,
             example_kwargs: dict | None = None) -> ModelGraph:
    """The computational graph of ``model``, read with ``torch.fx`` (or ``torch.export`` when fx cannot).

    A model fx cannot trace symbolically (HuggingFace models: transformers 5 has no fx
    tracer) is read with :func:`~hyperdnn.methods.graph.export_graph` when example inputs
    are given: the same node and edge kinds, from the ATen graph ``torch.export`` records.

    Args:
        model: any ``nn.Module``.
        leaf_modules: extra module classes kept as single nodes (not traced into),
            e.g. a block with data-dependent control flow that owns parameters.
        example_inputs: positional arguments of one forward call (e.g. ``(input_ids,)``,
            ``input_ids (B, T)``), used only when fx cannot trace the model.
        example_kwargs: keyword arguments of that call.

    Returns:
        a :class:`ModelGraph`; every parameter of ``model`` is owned by exactly one node.

    Raises:
        HDTypeError: ``model`` is no ``nn.Module``.
        ConfigError: fx cannot trace the model and no example inputs were given, or
            ``torch.export`` fails too (the message names the module whose forward failed,
            for both, and the fix), or a parameter is used by no node.

    Example:
        >>> g = graph_of(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
        >>> g.kinds
        ['input', 'linear', 'relu', 'output']
    """
    if not isinstance(model, nn.Module):
        raise HDTypeError(f"graph_of: model must be a torch.nn.Module (got {type(model).__name__})")
    leaf_modules = tuple(leaf_modules)  # read once: an iterator would be empty for export_graph below
    tracer = _PathTracer(leaf_modules)
    if tracer.is_leaf_module(model, ""):
        # fx would trace into a lone torch.nn layer (its weight read by get_attr); it is one node here
        # as it is inside any model.
        own = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
        layer = GraphNode(type(model).__name__.lower(), module_kind(model), "", own, type(model).__name__)
        return ModelGraph((GraphNode("input", "input"), layer, GraphNode("output", "output")), ((0, 1), (1, 2)))
    try:
        traced = tracer.trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ... depending on what it met
        where = tracer.failed_in
        part = f"module {where!r} ({type(model.get_submodule(where)).__name__})" if where else f"the forward of {type(model).__name__}"
        fx_failure = (f"torch.fx cannot trace {part} of {type(model).__name__}: {type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}")
        if example_inputs is None:
            raise ConfigError(
                f"graph_of: {fx_failure}; fix: pass example_inputs=(...) (one forward call's arguments: the graph is "
                "then read with torch.export), pass that module's class in leaf_modules= (it becomes one node) or make "
                "its forward free of data-dependent control flow, or use module_chain_graph(model) for an approximate "
                "graph read from the module tree alone"
            ) from err
        from .export_graph import export_graph  # export_graph imports this module

        try:
            return export_graph(model, example_inputs, example_kwargs, leaf_modules=leaf_modules)
        except ConfigError as export_err:
            raise ConfigError(f"graph_of: {fx_failure}; and {export_err}") from export_err
    return _from_fx(model, traced)


def _resolve(model: nn.Module, target: str) -> object:
    owner, _, attr = target.rpartition(".")
    return getattr(model.get_submodule(owner), attr, None)


def _shape_nodes(traced: fx.Graph) -> set[fx.Node]:
    """The nodes that compute shapes, not tensors (``x.shape``, ``x.size(0)``, ``d // heads``, ...).

    They are dropped from the graph (GHN-2's graphs hold the operations on tensors only):
    ``x.shape`` and ``x.size()``/``x.dim()`` calls, and every node all of whose inputs are such nodes.
    """
    meta: set[fx.Node] = set()
    for node in traced.nodes:
        if node.op in ("placeholder", "output", "get_attr", "call_module"):
            continue
        if node.op == "call_method" and node.target in ("size", "dim"):
            meta.add(node)
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "getattr" and node.args[1] in ("shape", "ndim", "dtype", "device"):
            meta.add(node)
        elif node.all_input_nodes and all(n in meta for n in node.all_input_nodes):
            meta.add(node)
    return meta


def owned_params(sub: nn.Module, params: dict[str, Tensor], canonical: dict[int, str],
                 owned: set[str]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``(name, shape)`` of the parameters of module ``sub`` that no earlier node owns.

    A tied tensor (an LM head sharing the embedding) goes by its first name, as in
    ``named_parameters()``: ``canonical`` maps ``id(tensor)`` to that name.
    """
    names = [canonical[id(p)] for _, p in sub.named_parameters()]
    return tuple((n, tuple(params[n].shape)) for n in dict.fromkeys(names) if n not in owned)


def require_all_owned(model: nn.Module, params: dict[str, Tensor], owned: set[str], caller: str,
                      graph: str) -> None:
    """Raise ``ConfigError`` when a parameter of ``model`` is owned by no node (the GHN could not predict it)."""
    missing = [n for n in params if n not in owned]
    if missing:
        raise ConfigError(
            f"{caller}: parameters {missing[:3]} of {type(model).__name__} are used by no node of {graph}; "
            "the graph hypernetwork could not predict them: remove unused parameters or use them in forward"
        )


def _from_fx(model: nn.Module, traced: fx.Graph) -> ModelGraph:
    index: dict[fx.Node, int] = {}
    nodes: list[GraphNode] = []
    edges: list[tuple[int, int]] = []
    owned: set[str] = set()
    params = dict(model.named_parameters())
    canonical = {id(p): n for n, p in params.items()}
    meta = _shape_nodes(traced)
    for node in traced.nodes:
        if node in meta:
            continue
        module, cls = None, ""
        own: tuple[tuple[str, tuple[int, ...]], ...] = ()
        if node.op == "placeholder":
            kind = "input"
        elif node.op == "output":
            kind = "output"
        elif node.op == "call_module":
            module = str(node.target)
            sub = model.get_submodule(module)
            kind, cls = module_kind(sub), type(sub).__name__
            own = owned_params(sub, params, canonical, owned)
        elif node.op == "get_attr":
            kind = "param"
            name = str(node.target)
            attr = _resolve(model, name)
            name = canonical.get(id(attr), name)
            if name in params and name not in owned:
                own = ((name, tuple(params[name].shape)),)
        elif node.op == "call_method":
            kind = function_kind(str(node.target))
        else:
            kind = function_kind(node.target)
        owned.update(n for n, _ in own)
        index[node] = len(nodes)
        nodes.append(GraphNode(node.name, kind, module, own, cls))
        for src in node.all_input_nodes:
            if src not in meta:
                edges.append((index[src], index[node]))
    require_all_owned(model, params, owned, "graph_of", "its traced graph")
    return ModelGraph(tuple(nodes), tuple(sorted(set(edges))))


def module_chain_graph(model: nn.Module) -> ModelGraph:
    """An approximate graph from the module tree: input -> every parameterised leaf module in
    registration order -> output, each fed by the one before.

    For models fx cannot trace (HuggingFace models under transformers 5). Parameters held
    directly by a non-leaf module (e.g. a positional table) get one ``param`` node each.

    Args:
        model: any ``nn.Module`` (also on the meta device; nothing is run).

    Returns:
        a :class:`ModelGraph` with ``approximate=True``.
    """
    if not isinstance(model, nn.Module):
        raise HDTypeError(f"module_chain_graph: model must be a torch.nn.Module (got {type(model).__name__})")
    nodes = [GraphNode("input", "input")]
    seen: set[int] = set()
    for path, mod in model.named_modules():
        # A tied tensor belongs to the first module that holds it, as in named_parameters().
        direct = [(f"{path}.{n}" if path else n, tuple(p.shape)) for n, p in mod.named_parameters(recurse=False)
                  if id(p) not in seen and not seen.add(id(p))]
        if not direct:
            continue
        leaf = not any(True for _ in mod.children())
        if leaf:
            nodes.append(GraphNode(path, module_kind(mod), path, tuple(direct), type(mod).__name__))
        else:
            nodes.extend(GraphNode(n, "param", None, ((n, s),)) for n, s in direct)
    nodes.append(GraphNode("output", "output"))
    edges = tuple((i, i + 1) for i in range(len(nodes) - 1))
    return ModelGraph(tuple(nodes), edges, approximate=True)

