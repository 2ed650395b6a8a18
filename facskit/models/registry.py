"""Named model variants (timm's `@register_model`): small functions that fill a `ModelSpec`, one builder.

    create_model("bmvc2018")                       # the paper's network, fresh weights
    create_model("scc-resnet50", aus=DISFA_AUS)    # 24 maps for DISFA's 12 AUs
    create_model("scc-lite", k=3, scc=(False, True, True))

Overrides may name any `ModelSpec` field (aus, input_size, ...) or architecture argument (width, depth,
k, scc, ...); anything else is an error naming the valid keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from facskit.errors import UsageError
from facskit.models.spec import BMVC_MEAN, BMVC_STD, BP4D_AUS, SCC_MEAN, SCC_STD, AUModel, ModelSpec

_REGISTRY: dict[str, Callable[..., AUModel]] = {}

# Architecture arguments each builder accepts, with the paper's values.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "hourglass": {"width": 256, "depth": 4},
    "scc": {
        "trunk": "resnet50",
        "trunk_width": 64,
        "head_channels": (256, 128, 64),
        "scc": (True,) * 3,
        "k": 7,
        "nodes": "channels",
    },
}


class ModelOptionError(UsageError, ValueError):
    """A model option out of range or of the wrong kind (`create_model("bmvc2018", width=12)`): a usage
    error for the CLI (one line, exit 2) that is still the ValueError callers of the builders catch."""


# Largest network (weights and buffers, in elements) a spec may describe: 500 M float32 = 2 GB, 7x the
# paper's SCC network (68 M). Bigger specs come from a typo or a hostile file, not from an experiment.
MAX_MODEL_ELEMENTS = 500_000_000


def register_model(function: Callable[..., AUModel]) -> Callable[..., AUModel]:
    """Register `function` under its name with underscores as dashes (`bmvc2018_lite` -> `bmvc2018-lite`)."""
    _REGISTRY[function.__name__.replace("_", "-")] = function
    return function


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **overrides: Any) -> AUModel:
    """A freshly initialised model by registry name; see the module docstring for `overrides`."""
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose from: {', '.join(list_models())}")
    return _REGISTRY[name](**overrides)


def _check_arch_args(spec: ModelSpec) -> None:
    """Each architecture argument of the kind of its default in ARCH_DEFAULTS (a whole number where the
    default is one, a list of the same kind of items where it is a tuple), so a string or a float from a
    YAML override or a checkpoint is refused by name instead of failing deep inside a layer."""
    for key, value in spec.kwargs.items():
        default = ARCH_DEFAULTS[spec.arch][key]
        values, defaults = (value, default) if isinstance(default, tuple) else ((value,), (default,))
        kind = type(defaults[0])
        if not isinstance(values, tuple) or not values:
            raise ValueError(f"{spec.arch} argument {key} must be a list of {kind.__name__}, not {value!r}")
        for item in values:
            if type(item) is not kind:  # bool is an int subclass: `width: true` is not a width
                raise ValueError(f"{spec.arch} argument {key} must be {kind.__name__}, not {value!r}")
            if kind is int and item < 1:
                raise ValueError(f"{spec.arch} argument {key} must be >= 1, not {value!r}")


def model_shell(spec: ModelSpec) -> AUModel:
    """The network `spec` describes on PyTorch's "meta" device: every parameter's shape, no memory.

    A spec is a few numbers that decide the network's size; a checkpoint of a few hundred bytes (or an
    override such as `model.overrides.width=100000000`) could otherwise make the builder allocate
    gigabytes before anything is checked. Raises ValueError for arguments of the wrong kind and for a
    network over MAX_MODEL_ELEMENTS; `load_checkpoint` compares a file's weight shapes against the shell.
    """
    import torch

    from facskit.models.hourglass import HourglassNet
    from facskit.models.scc import SCCNet

    builders: dict[str, Callable[..., AUModel]] = {"hourglass": HourglassNet, "scc": SCCNet}
    if spec.arch not in builders:
        raise ValueError(f"unknown architecture {spec.arch!r}; choose from: {', '.join(builders)}")
    unknown = sorted(set(spec.kwargs) - set(ARCH_DEFAULTS[spec.arch]))
    if unknown:
        raise ValueError(f"unknown {spec.arch} arguments {unknown}")
    _check_arch_args(spec)
    with torch.device("meta"):
        shell = builders[spec.arch](spec, **spec.kwargs)
    elements = sum(tensor.numel() for tensor in shell.state_dict().values())
    if elements > MAX_MODEL_ELEMENTS:
        raise ValueError(
            f"{spec.arch} network of {elements / 1e6:,.0f} M weights ({spec.kwargs}, input {spec.input_size})"
            " "
            f"exceeds facskit's bound of {MAX_MODEL_ELEMENTS / 1e6:,.0f} M"
        )
    return shell


def build_model(spec: ModelSpec) -> AUModel:
    """The one builder: a model from its spec (used by the variants and by `load_checkpoint`).

    The network is first described on the meta device (:func:`model_shell`), so an absurd spec is a
    ValueError, not an out-of-memory kill.
    """
    shell = model_shell(spec)
    return type(shell)(spec, **spec.kwargs)


def _variant(
    name: str, arch: str, arch_args: dict[str, Any], overrides: dict[str, Any], **fields: Any
) -> AUModel:
    spec_fields = {f.name for f in dataclasses.fields(ModelSpec)} - {"name", "arch", "arch_args"}
    args = {**ARCH_DEFAULTS[arch], **arch_args}
    for key, value in overrides.items():
        if key in spec_fields:
            fields[key] = value
        elif key in args:
            args[key] = value
        else:
            valid = ", ".join(sorted(spec_fields | set(args)))
            raise UsageError(f"model {name!r} has no option {key!r}; valid options: {valid}")
    try:
        spec = ModelSpec(name=name, arch=arch, arch_args=tuple(args.items()), **fields)  # type: ignore[arg-type]
        return build_model(spec)
    except ValueError as error:  # an override out of range: the user's input, so one line, exit 2
        raise ModelOptionError(f"model {name!r}: {error}") from None


def _bmvc(name: str, arch_args: dict[str, Any], overrides: dict[str, Any], input_size: int = 256) -> AUModel:
    return _variant(
        name,
        "hourglass",
        arch_args,
        overrides,
        input_size=input_size,
        aus=BP4D_AUS,
        convention="bmvc",
        mean=BMVC_MEAN,
        std=BMVC_STD,
        alignment="bmvc",
    )


def _scc(name: str, arch_args: dict[str, Any], overrides: dict[str, Any], input_size: int = 256) -> AUModel:
    # The SCC authors never released their alignment; facskit feeds every model the same BMVC-aligned
    # 256 crops so one prepared cache serves all of them.
    return _variant(
        name,
        "scc",
        arch_args,
        overrides,
        input_size=input_size,
        aus=BP4D_AUS,
        convention="scc",
        mean=SCC_MEAN,
        std=SCC_STD,
        alignment="bmvc",
    )


@register_model
def bmvc2018(**overrides: Any) -> AUModel:
    """BMVC'18 Hourglass at paper size: width 256, depth 4, 256 input (3.42 M parameters)."""
    return _bmvc("bmvc2018", {}, overrides)


@register_model
def bmvc2018_lite(**overrides: Any) -> AUModel:
    """Half-width Hourglass (0.86 M parameters, ~1/4 of the FLOPs): the fast default for analysis."""
    return _bmvc("bmvc2018-lite", {"width": 128}, overrides)


@register_model
def bmvc2018_tiny(**overrides: Any) -> AUModel:
    """Quarter-width, depth-3 Hourglass on 128 input (32x32 maps): trains in minutes on a laptop CPU."""
    return _bmvc("bmvc2018-tiny", {"width": 64, "depth": 3}, overrides, input_size=128)


@register_model
def bmvc2018_small(**overrides: Any) -> AUModel:
    """Quarter-width, depth-4 Hourglass on the paper's 256 input and 64x64 maps (0.22 M parameters, 0.70
    GFLOP per image, 4x bmvc2018-tiny's): a network a CPU can train that keeps the paper's input and map
    resolution (cross-validation against the lite presets: benchmarks/results/crossval_lite.md)."""
    return _bmvc("bmvc2018-small", {"width": 64, "depth": 4}, overrides)


@register_model
def scc_resnet50(**overrides: Any) -> AUModel:
    """AAAI'20 SCC network: ResNet-50 trunk, three deconvolutions with SCC modules (k = 7), 256 input."""
    return _scc("scc-resnet50", {}, overrides)


@register_model
def scc_lite(**overrides: Any) -> AUModel:
    """Half-width ResNet-18 trunk and a narrow SCC head on 128 input (32x32 maps) for CPU training."""
    return _scc(
        "scc-lite", {"trunk": "resnet18", "trunk_width": 32, "head_channels": (128, 64, 32)}, overrides, 128
    )
