"""Training configuration: one dataclass per section, YAML in, typed ``key=value`` overrides.

A run is fully described by a :class:`Config`. It is read from a preset name (``scc-bp4d``, a file in
``facskit/configs/``) or a YAML path, then command-line overrides with dotted keys are applied
(``optim.lr=1e-3 train.epochs=3``). Every key is checked: an unknown key is an error naming it and listing
the valid keys of its section, a value of the wrong type is an error naming the expected type, so a typo
never silently trains with a default. The resolved config is written as ``config.yaml`` in the run folder
and stored inside every checkpoint, so a checkpoint alone says how it was trained.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from facskit.errors import UsageError

__all__ = [
    "AugmentConfig",
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "Range",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "list_presets",
    "load_config",
    "save_config",
    "tcae_presets",
    "training_presets",
]


T = typing.TypeVar("T")


class ConfigError(UsageError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


@dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts, declared beside it: ``Annotated[int, Range(ge=1)]``.

    Every value read into a config (file, preset, override, a checkpoint's config) is checked against its
    field's range in one place (:func:`_build`), so a 0-epoch run or a NaN learning rate is a one-line
    error before anything is trained, not a traceback (or a silent no-op) deep in the loop. Bounds named
    ``ge``/``le`` include the limit, ``gt``/``lt`` exclude it; a float must also be finite. ``None`` (where
    the field allows it) is never range-checked.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: int | float, key: str) -> None:
        inside = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        if not inside:
            raise ConfigError(f"config key {key!r} must be {self.describe()}, got {value!r}")

    def describe(self) -> str:
        """``>= 1``, ``> 0 and < 1``: the range in words for the error message."""
        bounds = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{words} {bound}" for words, bound in bounds if bound is not None)


# Seeds feed numpy's SeedSequence (no negatives) and torch.manual_seed (64 bits).
SEED = Range(ge=0, le=2**63 - 1)
POSITIVE = Range(ge=1)  # counts: epochs, batch sizes, steps, frames
NON_NEGATIVE = Range(ge=0)


@dataclass
class ModelConfig:
    # Registry name of the network (facskit.models.list_models()), e.g. "bmvc2018" or "scc_bp4d".
    name: str = "bmvc2018"
    # Keyword arguments passed to create_model(name, **overrides), e.g. {width: 32} for a slim variant.
    overrides: dict[str, Any] = field(default_factory=dict)
    # Checkpoint whose weights initialise the network before training (a facskit checkpoint or a TCAE run
    # whose encoder initialises the trunk); parameters whose name and shape match are copied, the rest
    # (e.g. a head with another AU count) keep their fresh initialisation. None: train from scratch.
    init_from: str | None = None
    # Under DDP on CUDA, convert BatchNorm to SyncBatchNorm so statistics use the global batch.
    sync_bn: bool = False
    # Keep BatchNorm layers in eval mode (running statistics, not updated): for fine-tuning with tiny
    # batches, and what makes N-process CPU training match one process exactly.
    freeze_bn: bool = False


@dataclass
class DataConfig:
    # Prepared cache folder (``facskit prepare``); the CLI's --data sets it.
    cache: str = ""
    # More caches whose every frame joins the training set only (never validation, so best.ckpt and the
    # split stay those of `cache`), e.g. real faces labelled by `facskit teach`: AUs a cache does not label
    # are unknown there and masked out of the loss. max_train_frames applies to `cache` alone.
    extra_caches: list[str] = field(default_factory=list)
    # How subjects are split into training and validation: "kfold" holds out fold `fold` of a
    # subject-exclusive k-fold CV; "fera2015" trains on the FERA 2015 training subjects and validates on
    # its development subjects (BP4D); "none" trains on every frame with no validation (best.ckpt = last).
    split: Literal["kfold", "fera2015", "none"] = "kfold"
    # Held-out fold (0 .. folds-1) used for validation and best.ckpt when split is "kfold".
    fold: Annotated[int, NON_NEGATIVE] = 0
    # k of the subject-exclusive k-fold cross-validation (3 in the DISFA and BP4D protocols).
    folds: Annotated[int, Range(ge=2)] = 3
    # Seed of the subject-to-fold assignment; keep it fixed across folds of one experiment.
    fold_seed: Annotated[int, SEED] = 0
    # With split "kfold": validate (and choose best.ckpt) on this many subjects taken out of the training
    # folds instead of on the held-out fold, which is the test set of a cross-validation. 0 validates on
    # the held-out fold (then only last.ckpt is a fair test-set model).
    val_subjects: Annotated[int, NON_NEGATIVE] = 0
    # Network input side in pixels; None uses the model spec's input_size (256 for the paper models).
    image_size: Annotated[int | None, Range(ge=4, le=1024)] = None
    # Use only the first N training frames (overfitting checks, quick experiments); None: all.
    max_train_frames: Annotated[int | None, POSITIVE] = None
    # Use only the first N validation frames; None: all.
    max_val_frames: Annotated[int | None, POSITIVE] = None


@dataclass
class AugmentConfig:
    # Master switch; False trains on the aligned crops as they are (and skips every item below).
    enabled: bool = True
    # Horizontal flip with probability 0.5: the image is mirrored and the landmarks permuted left/right,
    # so the targets of left/right AU points swap with the face.
    flip: bool = True
    # Rotation drawn uniformly from [-rotate_deg, rotate_deg] degrees about the crop centre.
    rotate_deg: Annotated[float, Range(ge=0, le=180)] = 10.0
    # Scale drawn uniformly from [1 - scale, 1 + scale].
    scale: Annotated[float, Range(ge=0, lt=1)] = 0.05
    # Shift drawn uniformly from [-shift, shift] of the crop side, per axis.
    shift: Annotated[float, Range(ge=0, le=1)] = 0.03
    # Colour jitter amplitude: brightness, contrast and saturation factors in [1 - colour, 1 + colour].
    colour: Annotated[float, Range(ge=0, le=1)] = 0.2
    # Gaussian noise (sigma, pixels of the 256 crop) added to the landmarks the targets are drawn from,
    # the kind of landmark error BMVC'18 shows the network tolerates (Section 5.3).
    landmark_noise_px: Annotated[float, NON_NEGATIVE] = 1.0
    # Probability of turning the crop grey (luma in all three channels): real archives and some cameras
    # are monochrome, and a network that has only seen colour reads a grey face's skin as something else.
    grey: Annotated[float, Range(ge=0, le=1)] = 0.0
    # Probability of a Gaussian blur (sigma uniform in 0.5-2 pixels of the 256 crop): webcam and
    # compressed video are softer than the crops training sees.
    blur: Annotated[float, Range(ge=0, le=1)] = 0.0


@dataclass
class OptimConfig:
    # Optimiser: Adam is the SCC paper's choice (AAAI'20, Section 4.1).
    name: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    lr: Annotated[float, Range(gt=0)] = 5e-4
    weight_decay: Annotated[float, NON_NEGATIVE] = 1e-5
    # Momentum for sgd and rmsprop (ignored by Adam).
    momentum: Annotated[float, Range(ge=0, le=1)] = 0.0


@dataclass
class ScheduleConfig:
    # Epochs after which the learning rate is multiplied by gamma (MultiStepLR, stepped once per epoch).
    milestones: list[Annotated[int, NON_NEGATIVE]] = field(default_factory=lambda: [10, 15])
    gamma: Annotated[float, Range(gt=0)] = 0.1


@dataclass
class TrainConfig:
    # Passes over the training split.
    epochs: Annotated[int, POSITIVE] = 15
    # Global batch per optimiser step, summed over all DDP ranks and accumulation micro-batches, so the
    # same config gives the same optimisation on 1 or N GPUs; it must be divisible by
    # world_size * grad_accum.
    batch_size: Annotated[int, POSITIVE] = 32
    # Micro-batches per optimiser step (gradient accumulation) to fit a large batch in little memory.
    grad_accum: Annotated[int, POSITIVE] = 1
    # DataLoader worker processes per rank (0 loads in the main process).
    workers: Annotated[int, NON_NEGATIVE] = 4
    # Batches each worker prepares ahead.
    prefetch: Annotated[int, POSITIVE] = 2
    # Mixed precision on CUDA (bf16 autocast where supported, else fp16 with a gradient scaler);
    # ignored on CPU. It speeds up the paper-size networks; the lite presets turn it off, having measured
    # it cost ICC (about 0.05 after 12 epochs) for no speed.
    amp: bool = True
    # bf16 autocast on CPU: true, false (exact fp32), or "auto": on where the CPU has AVX-512 BF16 or AMX
    # (1.3-1.5x the fp32 training rate of the lite networks on one core of an AMX Xeon,
    # BENCHMARKS.md, "bf16 training on the CPU"), off elsewhere, where bf16 is emulated and slower than fp32.
    bf16_cpu: bool | Literal["auto"] = False
    # Seed of initialisation, sampling order and augmentation: two runs with one seed are bitwise equal
    # on CPU.
    seed: Annotated[int, SEED] = 0
    # "auto" (cuda if available, else cpu), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Stop after this many optimiser steps (smoke tests, benchmarks); None: run all epochs.
    max_steps: Annotated[int | None, POSITIVE] = None
    # Frames per forward pass during validation (per rank); None: the training micro-batch.
    eval_batch_size: Annotated[int | None, POSITIVE] = None
    # Weight of heatmap pixels inside a target Gaussian (target > 1% of the intensity scale) relative to
    # background pixels in the training loss. 1 is the papers' plain MSE. When AUs are rare and maps small
    # (32x32 lite models), background pixels dominate and a network can sit at "all zero" for epochs;
    # a weight of 5-20 makes the few foreground pixels count. Validation loss is always plain MSE.
    foreground_weight: Annotated[float, Range(gt=0)] = 1.0


@dataclass
class CheckpointConfig:
    # Also write last.ckpt every N optimiser steps inside an epoch, so a killed run resumes mid-epoch and
    # loses at most N steps; 0 saves only at the end of each epoch.
    every_steps: Annotated[int, NON_NEGATIVE] = 200
    # Validation metric that selects best.ckpt: mean ICC(3,1) over AUs (the papers' headline number) or
    # the negated validation loss when no metric is defined.
    best_metric: Literal["icc", "loss"] = "icc"


@dataclass
class LogConfig:
    # Progress line (images/s, loss, ETA) on stderr every N optimiser steps; 0 disables it.
    every_steps: Annotated[int, NON_NEGATIVE] = 20
    # Write TensorBoard event files in the run folder (skipped with a note when tensorboard is missing).
    tensorboard: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


# --- typing ------------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        return str(annotation).replace("typing.", "")
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` and converted where lossless; ConfigError otherwise.

    Numbers written as strings are accepted because YAML 1.1 reads ``5e-4`` (no dot) as a string.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    error = ConfigError(f"config key {key!r} expects {_type_name(annotation)}, got {value!r}")
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise error
    if origin is Literal:
        if value in args:
            return value
        raise error
    if origin is list:
        if not isinstance(value, list | tuple):
            raise error
        (item,) = args
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise error
        return {str(k): v for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise error
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise error from None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise error
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise error from None
        raise error
    if annotation is str:
        if isinstance(value, str):
            return value
        raise error
    raise error  # pragma: no cover - a field type this module does not handle


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_range(annotation: Any, value: Any, key: str) -> None:
    """``value`` (already coerced to ``annotation``'s type) within the :class:`Range` declared in it, and
    finite if a float; list items are checked against the item's annotation."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        if isinstance(value, int | float) and not isinstance(value, bool):
            for extra in extras:
                if isinstance(extra, Range):
                    extra.check(value, key)
    if isinstance(value, list):
        args = [a for a in typing.get_args(annotation) if typing.get_origin(a) is list]
        items = typing.get_args(args[0] if args else annotation)
        for i, item in enumerate(value):
            _check_range(items[0] if items else Any, item, f"{key}[{i}]")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of the dataclass ``cls`` from a mapping, every key and type checked."""
    where = prefix.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    fields = _fields(cls)
    declared = typing.get_type_hints(cls, include_extras=True)  # with each field's Range
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + str(unknown[0])!r}; valid keys in {where}: {', '.join(fields)}"
        )
    values = {}
    for name, annotation in fields.items():
        if name not in data:
            continue
        if dataclasses.is_dataclass(annotation):
            values[name] = _build(annotation, data[name], f"{prefix}{name}.")
        else:
            values[name] = _coerce(data[name], annotation, prefix + name)
            _check_range(declared[name], values[name], prefix + name)
    return cls(**values)


def config_from_dict(data: dict[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping (parsed YAML, a checkpoint's ``config``); strict."""
    config = _build(Config, data, "")
    _check_relations(config)
    return config


def _check_relations(config: Config) -> None:
    """The constraints between fields that a per-field :class:`Range` cannot state."""
    data, train = config.data, config.train
    if data.split == "kfold" and data.fold >= data.folds:
        raise ConfigError(
            f"config key 'data.fold' is {data.fold}, but there are only {data.folds} folds "
            f"(data.folds): use 0..{data.folds - 1}"
        )
    if train.batch_size % train.grad_accum:
        raise ConfigError(
            f"train.batch_size {train.batch_size} is not divisible by train.grad_accum {train.grad_accum}"
        )


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (YAML- and torch.save-safe) of a config."""
    return dataclasses.asdict(config)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: Config, overrides: typing.Iterable[str]) -> Config:
    """A new config with ``key=value`` overrides applied (dotted keys, values parsed as YAML scalars).

    ``model.overrides.width=32`` sets one entry of a free-form dict field.
    """
    data = config_to_dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=1e-3)")
        parts = key.split(".")
        node: Any = data
        cls: Any = Config
        for depth, part in enumerate(parts[:-1]):
            if cls is not None and dataclasses.is_dataclass(cls):
                fields = _fields(cls)
                if part not in fields:
                    where = ".".join(parts[:depth]) or "the config"
                    raise ConfigError(
                        f"unknown config key {'.'.join(parts[: depth + 1])!r}; "
                        f"valid keys in {where}: {', '.join(fields)}"
                    )
                cls = fields[part] if dataclasses.is_dataclass(fields[part]) else None
                is_dict = typing.get_origin(fields[part]) is dict
                if cls is None and not is_dict:
                    raise ConfigError(f"config key {'.'.join(parts[: depth + 1])!r} is not a section")
            node = node.setdefault(part, {})
        last = parts[-1]
        if cls is not None and dataclasses.is_dataclass(cls):
            fields = _fields(cls)
            if last not in fields:
                where = ".".join(parts[:-1]) or "the config"
                raise ConfigError(f"unknown config key {key!r}; valid keys in {where}: {', '.join(fields)}")
            if dataclasses.is_dataclass(fields[last]):
                raise ConfigError(f"config key {key!r} is a section; set a key in it ({key}.<name>=...)")
        node[last] = _parse_value(text)
    return config_from_dict(data)


# --- presets and files -------------------------------------------------------------------------------------


def list_presets() -> list[str]:
    """Names of the shipped presets (``facskit/configs/*.yaml`` without the extension)."""
    folder = resources.files("facskit") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def training_presets() -> list[str]:
    """The presets of heatmap-model training (``facskit train``, ``crossval``): all but the ``tcae*`` ones."""
    return [name for name in list_presets() if not name.startswith("tcae")]


def tcae_presets() -> list[str]:
    """The presets of TCAE pretraining (``facskit pretrain-tcae``), whose schema is their own."""
    return [name for name in list_presets() if name.startswith("tcae")]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section (a key in ``extra`` wins)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml_mapping(
    name_or_path: str | Path, presets: typing.Sequence[str], seen: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """The mapping of a YAML file or preset, with its ``base:`` (a preset name, or a file path relative to
    the file naming it) resolved and merged under it, and the name of its source for error messages."""
    path = Path(name_or_path)
    folder: Path | None = None
    if path.is_file():
        resolved = path.resolve()
        text, source, folder, identity = path.read_text(), str(path), resolved.parent, str(resolved)
    else:
        stem = str(name_or_path).removesuffix(".yaml")
        if stem not in presets:
            raise ConfigError(
                f"no config file or preset named {str(name_or_path)!r}; presets: {', '.join(presets)}"
            )
        text = (resources.files("facskit") / "configs" / f"{stem}.yaml").read_text()
        source = identity = f"preset {stem}"
    if identity in seen:
        raise ConfigError(f"{source}: its base chain comes back to it")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a mapping of config sections")
    base = data.pop("base", None)
    if base is None:
        return data, source
    if not isinstance(base, str):
        raise ConfigError(f"{source}: base must be a preset name or a YAML path, not {base!r}")
    relative = folder / base if folder is not None else None
    base_source = relative if relative is not None and relative.is_file() else base
    try:
        base_data, _ = _read_yaml_mapping(base_source, presets, (*seen, identity))
    except ConfigError as error:
        raise ConfigError(f"{source}: base {base!r}: {error}") from None
    return _merge(base_data, data), source


def read_config_source(
    name_or_path: str | Path, presets: typing.Sequence[str], from_dict: typing.Callable[[dict], T]
) -> T:
    """A YAML file, or a shipped preset among ``presets``, parsed by ``from_dict``; every error names the
    file or preset it came from. Shared by the heatmap and TCAE configs.

    A top-level ``base: NAME`` (a preset among ``presets`` or a YAML path, relative to the file) reads that
    config first and lays this one over it, section by section, so a variant states only what it changes.
    """
    data, source = _read_yaml_mapping(name_or_path, presets)
    try:
        return from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_config(name_or_path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """The config of a preset name (``scc-bp4d``) or a YAML path, with ``key=value`` overrides applied."""
    return apply_overrides(read_config_source(name_or_path, training_presets(), config_from_dict), overrides)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included), the run folder's record."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
