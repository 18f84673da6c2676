"""The one config base: field checks, JSON round trips and a registry by type name.

Every part of the three built axes is a small dataclass deriving from an axis
base defined here: ``InputConfig`` (inputs), ``BodyConfig`` (bodies) and
``OutputConfig`` (output strategies). Defining such a class is all it takes to
join: the class registers itself under its name (or ``name=``) when it is
created, ``to_dict``/``from_dict`` follow its dataclass fields, and each field
is checked by the check named in its declaration:

    @dataclass
    class Conv1dBody(BodyConfig, name="conv1d"):   # JSON: {"type": "conv1d", ...}
        width: int = checked(positive_int, default=64)
        kernels: tuple[int, ...] = checked(sizes(example=(3, 3)), default=(3,))
        mixes_tokens: ClassVar[bool] = True

        def build(self, in_features: int) -> BodyModule: ...

The checks are plain functions ``check(part, field, value) -> value`` (they
return the value normalised, e.g. a list of sizes as a tuple) raising
:class:`~hyperdnn.errors.ConfigError` that names the part, the field, the value
and what was expected; they are usable on their own, e.g. by recipe configs.
``to_dict``/``from_dict`` serve any dataclass (recipe configs included): tuples
come back as tuples and nested configs as configs, by the fields' type hints.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, Callable, ClassVar, TypeVar

from torch import nn

from .errors import ConfigError, HDTypeError

__all__ = [
    "BodyConfig",
    "Check",
    "checked",
    "choice",
    "Config",
    "flag",
    "from_dict",
    "InputConfig",
    "instance_of",
    "keyword",
    "non_negative_int",
    "number",
    "optional",
    "OutputConfig",
    "positive_int",
    "registered",
    "require_config",
    "sizes",
    "to_dict",
]

Check = Callable[[str, str, Any], Any]
"""A field check: ``check(part, field, value)`` returns the (normalised) value or raises ConfigError."""

T = TypeVar("T")

MAX_DEPTH = 16  # configs nest a level or two (Additive(inner=...), Concat(parts)); deeper is a malformed file

_INT_LIMIT = 2**63  # torch sizes are int64

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def _got(value: Any) -> str:
    """``True, a bool`` / ``2.5, a float``: the value and its type, for messages."""
    kind = type(value).__name__
    return f"{value!r}, {'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


# ------------------------------------------------------------ checks


def positive_int(part: str, name: str, value: Any) -> int:
    """An int > 0 (a size, a count); bools are refused, numpy ints become ints."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{part}: {name} must be a positive int (got {_got(value)})")
    if value <= 0:
        raise ConfigError(f"{part}: {name} must be > 0 (got {value!r}); {name} must be a positive int")
    if value >= _INT_LIMIT:
        raise ConfigError(f"{part}: {name} must be below 2**63 (got {value!r}); no tensor can be that large")
    return int(value)


def non_negative_int(part: str, name: str, value: Any) -> int:
    """An int >= 0 (an index, a dimension); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{part}: {name} must be a non-negative int (got {_got(value)})")
    if value < 0:
        raise ConfigError(f"{part}: {name} must be >= 0 (got {value!r})")
    if value >= _INT_LIMIT:
        raise ConfigError(f"{part}: {name} must be below 2**63 (got {value!r}); no tensor can be that large")
    return int(value)


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Check:
    """A finite real number in a range, as a float; bools, NaN and infinities are refused.

    Args:
        low, high: bounds (None: unbounded on that side).
        low_open, high_open: exclude the bound itself.
    """
    if low is not None and high is not None:
        want = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        want = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        want = f"{'<' if high_open else '<='} {high:g}"
    else:
        want = ""

    def check(part: str, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{part}: {name} must be a finite number {want} (got {_got(value)})".replace("  ", " "))
        v = float(value)
        bad = not math.isfinite(v)
        bad = bad or (low is not None and (v <= low if low_open else v < low))
        bad = bad or (high is not None and (v >= high if high_open else v > high))
        if bad:
            raise ConfigError(f"{part}: {name} must be a finite number {want} (got {value!r})".replace("  ", " "))
        return v

    return check


def choice(*options: Any) -> Check:
    """One of the given values (strings, or None)."""
    named = sorted(o for o in options if o is not None)
    if len(options) <= 3:
        want = " or ".join(repr(o) for o in ([None] if None in options else []) + named)
    else:
        want = f"one of {named}" + (" or None" if None in options else "")

    def check(part: str, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not any(value is o or (type(value) is type(o) and value == o) for o in options):
            raise ConfigError(f"{part}: {name} must be {want} (got {value!r})")
        return value

    return check


def flag(part: str, name: str, value: Any) -> bool:
    """True or False (not 0/1 or a string)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{part}: {name} must be True or False (got {_got(value)})")
    return value


def keyword(part: str, name: str, value: Any) -> str:
    """A str usable as a keyword argument of a call (``model(x, task=3)``)."""
    if not isinstance(value, str) or not value.isidentifier():
        raise ConfigError(f"{part}: {name} must be a keyword name such as 'task' (a Python identifier; got {value!r})")
    return value


def sizes(length: int | None = None, example: tuple[int, ...] = (64,)) -> Check:
    """A tuple of positive ints (a list is accepted and becomes a tuple); ``length`` fixes how many.

    A single int is refused with the tuple to write instead (``(64,)``), never
    silently wrapped.
    """
    what = f"{_NUMBER_WORDS.get(length, length)} positive ints" if length is not None else "a tuple of ints"

    def check(part: str, name: str, value: Any) -> tuple[int, ...]:
        shown = example if length is not None or not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or value <= 0 else (int(value),)
        tail = "" if length is not None else ", each > 0"
        why = ""
        if isinstance(value, (tuple, list)):
            if length is not None and len(value) != length:
                why = f": {len(value)} given"
            for i, v in enumerate(value):
                if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                    why = f": element {i} is {_got(v)}"
                    break
            if not why:
                return tuple(int(v) for v in value)
        raise ConfigError(f"{part}: {name} must be {what} such as {shown}{tail} (got {value!r}{why})")

    return check


def optional(check: Check) -> Check:
    """None, or a value that passes ``check``."""

    def optional_check(part: str, name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(part, name, value)
        except ConfigError as e:
            raise ConfigError(f"{e} (or None)") from None

    return optional_check


def instance_of(cls: type, what: str) -> Check:
    """An instance of ``cls`` (e.g. an ``nn.Module``); a wrong type is an HDTypeError."""

    def check(part: str, name: str, value: Any) -> Any:
        if not isinstance(value, cls):
            raise HDTypeError(f"{part}: {name} must be {what} (got {type(value).__name__})")
        return value

    return check


def checked(check: Check, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
            stored: bool = True, doc: str = "", counts_tensors: bool = False) -> Any:
    """A dataclass field whose value ``check`` validates when the config is made.

    Args:
        check: the field check (``positive_int``, ``number(0, 1)``, ...).
        default: as in ``dataclasses.field`` (neither this nor ``factory``: the field is required).
        factory: ``default_factory`` of ``dataclasses.field``.
        stored: False for a field that is not written to files (a module); loading
            then takes it as a keyword (``hd.load(..., encoder=module)``).
        doc: what to pass for a field that is not stored, for the loader's message.
        counts_tensors: the value (or the tuple's length) counts layers that each hold
            tensors; a loader refuses more than its file holds before building anything.
    """
    metadata = {"check": check, "stored": stored, "doc": doc, "counts_tensors": counts_tensors}
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


# ------------------------------------------------------------ the base and the axes


class Config:
    """Base of every part's config dataclass: field checks, ``to_dict``/``from_dict``, registry.

    Subclasses are ``@dataclass`` classes whose fields are declared with
    :func:`checked`; relations between fields go in :meth:`check`. A subclass of
    an axis base (``InputConfig``, ``BodyConfig``, ``OutputConfig``) is registered
    under its class name, or under ``name=`` given in the class statement.
    """

    _axis: ClassVar[str | None] = None
    _required: ClassVar[tuple[str, ...]] = ()  # class attributes every part of the axis sets
    _registry: ClassVar[dict[str, dict[str, type]]] = {}
    type_name: ClassVar[str]

    def __init_subclass__(cls, axis: str | None = None, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if axis is not None:  # an axis base: not a part itself
            cls._axis = axis
            cls._axis_base = cls  # type: ignore[attr-defined]
            Config._registry.setdefault(axis, {})
            return
        if cls._axis is None:
            return
        for attr in cls._required:
            if not hasattr(cls, attr):
                raise ConfigError(f"{cls.__qualname__}: a part of the {cls._axis} axis must set the class attribute "
                                  f"{attr} (see {cls._axis_base.__name__})")  # type: ignore[attr-defined]
        key = name or cls.__name__
        table = Config._registry[cls._axis]
        old = table.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ConfigError(
                f"{cls.__qualname__}: the {cls._axis} type name {key!r} is taken by {old.__module__}.{old.__qualname__}; "
                f"register under another with class {cls.__name__}(..., name='my-{key.lower()}')"
            )
        cls.type_name = key
        table[key] = cls

    def __post_init__(self) -> None:
        part = type(self).__name__
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(part, f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Checks between fields (e.g. heads divides dim); each field's own check has passed."""

    @classmethod
    def from_fields(cls: type[T], values: dict[str, Any]) -> T:
        """Makes the config from decoded field values (a class with another constructor overrides this)."""
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``{"type": name, **fields}`` (see :func:`to_dict`)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], data: Any, *, where: str | None = None, **given: Any) -> T:
        """The config a dict from :meth:`to_dict` describes (see :func:`from_dict`)."""
        return from_dict(cls, data, where=where, **given)


class InputConfig(Config, axis="inputs"):
    """Base of the inputs axis: ``build() -> InputModule`` (see :mod:`hyperdnn.conditioning`)."""

    what: ClassVar[str] = "an input config"
    examples: ClassVar[str] = ("hd.TaskEmbedding(num_tasks, dim), hd.External(dim), hd.DataEncoder(encoder, dim), "
                               "hd.Noise(dim) or hd.Concat(...)")
    module_hint: ClassVar[str] = "to condition on the data through that module, use hd.DataEncoder(module, dim)"

    def build(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build()")


class BodyConfig(Config, axis="body"):
    """Base of the architecture axis: ``build(in_features) -> BodyModule`` (see :mod:`hyperdnn.bodies`).

    Attributes:
        mixes_tokens: whether the body lets component tokens see each other (RNN,
            attention: True; a token-wise MLP: False). Output strategies read it
            from the config, without building the body.
    """

    what: ClassVar[str] = "a body config"
    examples: ClassVar[str] = "hd.MLP(hidden=(100, 100)), hd.RNN(hidden=64) or hd.Attention(dim=64)"
    module_hint: ClassVar[str] = "a body is made from its config; a custom body needs a hd.config.BodyConfig subclass"
    mixes_tokens: ClassVar[bool]
    _required: ClassVar[tuple[str, ...]] = ("mixes_tokens",)

    def build(self, in_features: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build(in_features)")


class OutputConfig(Config, axis="outputs"):
    """Base of the outputs axis: ``build(spec, cond_dim, body, initial) -> OutputModule`` (see :mod:`hyperdnn.outputs`)."""

    what: ClassVar[str] = "an output-strategy config"
    examples: ClassVar[str] = ("hd.GenerateOnce(), hd.MultiHead(), hd.ComponentWise(tile=(16, 16)), "
                               "hd.ChunkWise(chunk_size=4096), hd.LowRank(rank=4) or hd.Additive(inner=...)")
    module_hint: ClassVar[str] = "an output strategy is made from its config; a custom one needs a hd.config.OutputConfig subclass"
    #: True for a strategy that makes weights for any target of a family (call-time targets,
    #: ``hd.Implicit``): its tensors do not depend on the target's widths.
    any_target: ClassVar[bool] = False

    def build(self, spec: Any, cond_dim: int, body: BodyConfig, initial: dict[str, Any]) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build(spec, cond_dim, body, initial)")


_AXES: dict[str, type[Config]] = {"inputs": InputConfig, "body": BodyConfig, "outputs": OutputConfig}


def registered(axis: str) -> dict[str, type]:
    """The registered parts of an axis (``"inputs"``, ``"body"``, ``"outputs"``), type name -> class."""
    if axis not in Config._registry:
        raise ConfigError(f"config: unknown axis {axis!r}; expected one of {sorted(Config._registry)}")
    return dict(Config._registry[axis])


def _hd_name(cls: type) -> str:
    return f"hd.{cls.__name__}" if cls.__module__.startswith("hyperdnn") else cls.__name__


def require_config(part: str, name: str, value: Any, base: type[Config]) -> None:
    """Raises HDTypeError naming the fix unless ``value`` is an instance of the axis base ``base``.

    Catches a class given for an instance (``outputs=hd.ChunkWise``), a config of
    another axis (``inputs=hd.MLP()``) and a module or other object.
    """
    if isinstance(value, base):
        return
    head = f"{part}: {name} must be a config such as {base.examples}"
    if isinstance(value, type) and issubclass(value, Config):
        if issubclass(value, base):
            raise HDTypeError(f"{part}: {name}={value.__name__} is the class, not a config; "
                              f"pass an instance such as {_hd_name(value)}(...)")
        raise HDTypeError(f"{head} (got the class {value.__name__}, {_axis_of(value).what}: "
                          f"pass an instance of it as {_axis_of(value)._axis}=)")
    if isinstance(value, Config) and _axis_of(type(value)) is not None:
        other = _axis_of(type(value))
        raise HDTypeError(f"{head} (got {type(value).__name__}, {other.what}: pass it as {other._axis}=)")
    if isinstance(value, nn.Module):
        raise HDTypeError(f"{head} (got {type(value).__name__}, a module: {base.module_hint})")
    raise HDTypeError(f"{head} (got {_got(value)})")


def _axis_of(cls: type) -> Any:
    return _AXES.get(getattr(cls, "_axis", None) or "")


# ------------------------------------------------------------ JSON


class NotStoredError(ConfigError):
    """A field that files do not hold (a module) was not given to :func:`from_dict`."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass instance as a JSON-able dict, field by field.

    Registered parts get ``"type": <name>`` first; nested dataclasses become dicts;
    tuples become lists. Fields declared ``stored=False`` are left out.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise HDTypeError(f"to_dict: expected a config instance (got {type(cfg).__name__})")
    out: dict[str, Any] = {}
    if isinstance(cfg, Config) and cfg._axis is not None:
        out["type"] = cfg.type_name
    for f in dataclasses.fields(cfg):
        if f.metadata.get("stored", True):
            out[f.name] = _encode(getattr(cfg, f.name))
    return out


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: Any, *, where: str | None = None, **given: Any) -> T:
    """Rebuilds a config from :func:`to_dict`'s output (e.g. read from JSON).

    Args:
        cls: the dataclass to make, or an axis base (``InputConfig``, ...): the
            class is then looked up by the dict's ``"type"`` in the registry.
        data: the dict.
        where: where the dict came from (``"outputs"``); prefixes error messages.
        given: values of fields that are not stored (``encoder=module``).

    Returns:
        The config, validated by its own checks. Lists come back as tuples where
        the field's type hint says tuple; nested dicts as configs.

    Raises:
        ConfigError: the dict is not an object, names an unknown type or field,
            lacks a required field, or holds a value the part's checks refuse (the
            message says where: ``outputs.inner: LowRank: rank must be ...``).
    """
    return _decode_config(cls, data, where, given, 0)


def _load_method_parts() -> None:
    """Registers the parts that methods define (e.g. ``Preference``, ``LoRAOutput``): they join the
    registry when ``hyperdnn.methods`` is imported, which ``import hyperdnn`` does not do. The module
    imported is always this one, by a plain import statement, never a name read from a file."""
    import hyperdnn.methods  # noqa: F401


def _decode_config(cls: type, data: Any, where: str | None, given: dict[str, Any], depth: int) -> Any:
    at = f"{where}: " if where else ""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{at}configs nested more than {MAX_DEPTH} levels deep")
    if not isinstance(data, dict):
        raise ConfigError(f"{at}expected an object of {cls.__name__} fields (got {type(data).__name__})")
    data = dict(data)
    target = cls
    axis = getattr(cls, "_axis", None) if isinstance(cls, type) and issubclass(cls, Config) else None
    if axis is not None:
        table = Config._registry[axis]
        kind = data.pop("type", None)
        if kind is None and cls is getattr(cls, "_axis_base", None):
            raise ConfigError(f"{at}no 'type' given; expected one of {sorted(table)}")
        if kind is not None:
            if isinstance(kind, str) and kind not in table:
                _load_method_parts()
            if not isinstance(kind, str) or kind not in table:
                raise ConfigError(f"{at}unknown {axis} type {kind!r}; expected one of {sorted(table)}")
            target = table[kind]
            if not issubclass(target, cls):
                raise ConfigError(f"{at}{kind} is not a {cls.__name__}")
    fs = {f.name: f for f in dataclasses.fields(target) if f.init}
    unknown = sorted(k for k in data if k not in fs or not fs[k].metadata.get("stored", True))
    if unknown:
        raise ConfigError(f"{at}{target.__name__} has no stored field {unknown[0]!r}; its fields are {sorted(fs)}")
    hints = _hints(target)
    values: dict[str, Any] = {}
    for name, f in fs.items():
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if not f.metadata.get("stored", True):
            if name in given:
                values[name] = given[name]
            elif not has_default:
                doc = f.metadata.get("doc") or f"the {name}"
                raise NotStoredError(f"{at}this model has a {target.__name__} whose {name} is not stored in files; "
                                     f"pass {name}=<{doc}>")
            continue
        if name not in data:
            if not has_default:
                raise ConfigError(f"{at}{target.__name__} needs the field {name!r}")
            continue
        values[name] = _decode(data[name], hints.get(name, Any), f"{where or target.__name__}.{name}", given, depth + 1)
    try:
        return target.from_fields(values) if issubclass(target, Config) else target(**values)
    except NotStoredError:
        raise
    except (ConfigError, HDTypeError) as e:
        raise type(e)(f"{at}{e}") from None
    except TypeError as e:  # a constructor that refuses the fields (a plain dataclass without checks)
        raise ConfigError(f"{at}{target.__name__}: {e}") from None


def _decode(value: Any, hint: Any, where: str, given: dict[str, Any], depth: int) -> Any:
    """A JSON value back to the field's type: lists to tuples, dicts to configs; the rest as is."""
    if hint is Any or hint is None:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for a in args:
            if a is not type(None) and _fits(value, a):
                return _decode(value, a, where, given, depth)
        return value
    if _is_config_type(hint):
        return _decode_config(hint, value, where, given, depth)
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return tuple(value)  # the field's check names the wrong length
            elems = list(args)
        else:
            elems = [args[0] if args else Any] * len(value)
        out = [_decode(v, h, f"{where}[{i}]", given, depth + 1) for i, (v, h) in enumerate(zip(value, elems))]
        return tuple(out) if origin is tuple else out
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the shape of a type hint (for picking a member of a union)."""
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple))
    if _is_config_type(hint):
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _is_config_type(hint: Any) -> bool:
    return isinstance(hint, type) and (dataclasses.is_dataclass(hint) or issubclass(hint, Config))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation that does not resolve: values stay as JSON gave them
            _HINTS[cls] = {}
    return _HINTS[cls]
