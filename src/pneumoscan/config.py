"""One typed configuration object for a whole run.

Every trained model stores the full :class:`Config` it was trained with (in its model file and as
``config.json`` in the run directory), so any result can be reproduced with
``pneumoscan train --config RUN_DIR/config.json``.  Named *recipes* are ready-made configs:
``seed`` is the original notebook's recipe, ``default`` the fast, shift-robust recipe of the
bundled model.  Any field can be overridden with ``--set section.field=value``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pneumoscan.errors import PneumoscanError
from pneumoscan.files import read_regular_file

MAX_CONFIG_BYTES = 2**20


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PreprocessConfig(_Section):
    """How a decoded image becomes model input (see :mod:`pneumoscan.preprocess`)."""

    image_size: int = Field(224, ge=32, le=1024, description="square side in pixels after resizing")
    channels: Literal[1, 3] = Field(3, description="grayscale copied to this many channels")
    crop_fraction: float = Field(1.0, gt=0.3, le=1.0, description="centre crop kept before resizing")
    normalization: Literal["none", "zscore"] = Field(
        "none", description="'zscore': each image scaled to zero mean, unit std (first layer of the network)"
    )


class AugmentConfig(_Section):
    """Random batch augmentation during training (kornia). A value of 0 turns that transform off."""

    enabled: bool = True
    rotation: float = Field(20.0, ge=0, le=180, description="max rotation in degrees")
    shear: float = Field(0.2, ge=0, le=1, description="max shear as a factor (tan of the angle), Keras-style")
    zoom: float = Field(0.2, ge=0, lt=1, description="scale drawn from [1-zoom, 1+zoom]")
    shift: float = Field(0.1, ge=0, lt=1, description="max shift as a fraction of width and height")
    hflip: bool = True
    framing: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="random field of view: a crop of the film up to this fraction larger or smaller "
        "than the model's centre crop, at a random aspect and position (training images are cached wider)",
    )
    brightness: float = Field(0.0, ge=0, le=1, description="max additive brightness change")
    contrast: float = Field(0.0, ge=0, le=1, description="contrast factor drawn from [1-c, 1+c]")
    gamma: float = Field(0.0, ge=0, le=1, description="gamma drawn from [1-g, 1+2g]")
    blur: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    noise: float = Field(0.0, ge=0, le=0.5, description="std of additive Gaussian noise")
    erasing: float = Field(0.0, ge=0, le=1, description="probability of erasing a random rectangle")


class DataConfig(_Section):
    """Where the images are, and how they are listed, split, sampled and cached."""

    sources: list[str] = Field(
        default_factory=list,
        description="data folders (Kaggle layout) and labels CSVs; each is a site (train --data sets it)",
    )
    val_fraction: float = Field(0.2, gt=0, lt=0.9, description="share of train cut out for validation")
    min_val_images: int = Field(
        100, ge=0, description="a val/ folder smaller than this is merged into train and re-split"
    )
    split_seed: int = 42
    cache_dir: str | None = Field(None, description="decoded-image cache; default ~/.cache/pneumoscan")
    balanced_sampling: bool = Field(False, description="draw training batches class-balanced")
    site_balance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="0: sites drawn in proportion to their size; 1: every site equally likely per draw",
    )
    balance_views: bool = Field(
        False,
        description="with balanced_sampling: both classes equally likely within each view (PA, AP, ...) of "
        "a site too, so that the look of a view cannot stand in for a class",
    )
    ambiguous_other: Literal["exclude", "negative"] = Field(
        "exclude",
        description="OTHER films marked ambiguous (labels CSV opacity=1): left out of training and "
        "validation (exclude) or trained as negatives for pneumonia (negative); evaluate reports them apart",
    )


class ModelConfig(_Section):
    """Which architecture from the registry, and its options."""

    architecture: str = "seed-cnn"
    options: dict[str, Any] = Field(default_factory=dict)
    gate: bool = Field(
        False,
        description="add the 'frontal chest film?' gate head that refuses images the model cannot judge",
    )


class GateConfig(_Section):
    """How the gate head (``model.gate``) is trained and where its refusal threshold is set."""

    negatives: list[str] = Field(
        default_factory=list, description="folders of real non-chest images (e.g. other body parts' X-rays)"
    )
    generated_negatives: int = Field(
        3000, ge=0, description="procedurally generated non-chest images (noise, text, charts, shapes, ...)"
    )
    negative_fraction: float = Field(
        0.25, ge=0, le=1, description="negatives added per chest film in a batch"
    )
    loss_weight: float = Field(0.5, ge=0, description="weight of the gate's loss next to the classifier's")
    max_refused: float = Field(
        0.01, ge=0, lt=0.5, description="share of validation chest films the refusal threshold may refuse"
    )
    min_threshold: float = Field(
        0.5, gt=0, lt=1, description="lowest refusal threshold on the out-of-distribution score"
    )


class TrainConfig(_Section):
    """The optimisation recipe and the hardware it runs on (Lightning)."""

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(50, ge=1)
    scheduler: Literal["plateau", "onecycle"] = "plateau"
    plateau_factor: float = Field(0.2, gt=0, lt=1)
    plateau_patience: int = Field(2, ge=0)
    early_stopping_patience: int | None = Field(5, ge=1, description="None: train all epochs")
    class_weighted_loss: bool = Field(False, description="weight BCE by inverse class frequency")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    ema_decay: float | None = Field(None, gt=0, lt=1, description="exponential moving average of weights")
    seed: int = 0
    precision: Literal["auto", "bf16", "32"] = Field(
        "auto",
        description="auto: bf16 autocast only where the hardware has native bf16 (CUDA, AVX512-BF16/AMX)",
    )
    channels_last: bool = True
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    max_steps: int = Field(-1, description="stop after this many optimiser steps (-1: no limit)")
    monitor: Literal["val_loss", "val_auc_worst", "val_auc_mean"] = Field(
        "val_loss",
        description="what model selection (best.ckpt) and early stopping follow: the pooled validation "
        "loss, or the worst or mean per-site validation ROC-AUC",
    )


ThresholdRule = Literal[
    "fixed",
    "sensitivity-bound",
    "sensitivity-point",
    "specificity-bound",
    "specificity-point",
    "youden",
    "worst-site",
]


class CalibrationConfig(_Section):
    """Temperature scaling and the operating threshold, both fitted on the validation split.

    The target rules (:func:`pneumoscan.calibration.choose_threshold`): ``*-point`` keeps the
    sensitivity (specificity) on the fitting films at least at the target; ``*-bound`` keeps its
    one-sided Clopper-Pearson lower bound at ``confidence`` at least at the target, so that the target
    holds on new patients of the same site with that confidence.
    """

    temperature_scaling: bool = True
    threshold_rule: ThresholdRule = "fixed"
    threshold: float = Field(0.5, gt=0, lt=1, description="used by the 'fixed' rule")
    target_sensitivity: float = Field(0.98, gt=0, le=1, description="used by the 'sensitivity-*' rules")
    target_specificity: float = Field(0.9, gt=0, le=1, description="used by the 'specificity-*' rules")
    confidence: float = Field(0.95, ge=0.5, lt=1, description="used by the '*-bound' rules")

    @field_validator("threshold_rule", mode="before")
    @classmethod
    def _legacy_rule(cls, value: Any) -> Any:
        """Files written before the bound rules say "sensitivity" for what is now "sensitivity-point"."""
        return "sensitivity-point" if value == "sensitivity" else value


class ExplainConfig(_Section):
    """Which heat map a model shows (see :mod:`pneumoscan.explain`); stored in the model file."""

    method: Literal["gradcam", "gradcam++", "layercam"] = Field(
        "gradcam",
        description="gradcam: channels weighted by their mean gradient; gradcam++: by positive gradients "
        "with second-order weights; layercam: every cell weighted by its own positive gradient",
    )
    layers: list[int] = Field(
        default_factory=lambda: [-1],
        min_length=1,
        max_length=4,
        description="feature stages the map is made from, counted from the last (-1; -2 is the one before)",
    )
    combine: Literal["mean", "product"] = Field(
        "mean", description="how the maps of several layers (each scaled to peak 1) become one"
    )
    smoothing: Literal["none", "shift", "shift+flip"] = Field(
        "none",
        description="average the map over copies of the input shifted by 1/32 of its side in four "
        "directions (and mirrored left-right), each mapped back",
    )

    def describe(self) -> str:
        """The map in words, e.g. ``gradcam of stage -1`` or ``layercam, product of stages -2, -1``."""
        layers = ", ".join(map(str, self.layers))
        stages = f"of stage {layers}" if len(self.layers) == 1 else f"{self.combine} of stages {layers}"
        smoothed = "" if self.smoothing == "none" else f", smoothed ({self.smoothing})"
        return f"{self.method} {stages}{smoothed}"

    @field_validator("layers")
    @classmethod
    def _stages_from_the_end(cls, layers: list[int]) -> list[int]:
        if any(layer >= 0 for layer in layers) or len(set(layers)) != len(layers):
            raise ValueError("distinct negative stage numbers, e.g. [-1] or [-2, -1]")
        return layers


class Config(_Section):
    """Everything that defines a training run."""

    recipe: str = "seed"
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)

    def to_json(self) -> str:
        """Serialise to indented JSON."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        """Validate a plain dict; errors become one-line :class:`PneumoscanError` messages."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PneumoscanError(f"{source}: {first_error(exc)}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a config saved as JSON (e.g. a run directory's ``config.json``)."""
        path = Path(path)
        try:
            data = json.loads(read_regular_file(path, MAX_CONFIG_BYTES))  # never a FIFO or a device
        except FileNotFoundError:
            raise PneumoscanError(f"{path}: config file not found") from None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise PneumoscanError(f"{path}: not a readable JSON config ({reason})") from exc
        except RecursionError:
            raise PneumoscanError(f"{path}: not a readable JSON config (nested too deeply)") from None
        return cls.from_dict(data, str(path))

    def with_overrides(self, overrides: list[str]) -> Config:
        """Apply ``section.field=value`` overrides (value parsed as JSON, else taken as a string)."""
        data = self.model_dump()
        for item in overrides:
            key, sep, raw = item.partition("=")
            parts = key.strip().split(".")
            if not sep or not all(parts):
                raise PneumoscanError(f"--set {item!r}: expected section.field=value, e.g. train.lr=0.001")
            target = data
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    raise PneumoscanError(f"--set {item!r}: unknown config section {part!r}")
                target = target[part]
            target[parts[-1]] = _parse_value(raw)
        return Config.from_dict(data, "--set")


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def first_error(exc: ValidationError) -> str:
    """The first problem of a pydantic validation error on one line, naming its field (``a.b.0``)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" + (f" (got {err['input']!r})" if "input" in err else "")


def seed_recipe() -> Config:
    """The original Keras notebook: 224 px RGB, ``seed-cnn``, Adam 3e-5, plateau LR, early stopping."""
    return Config(recipe="seed", model=ModelConfig(gate=True))


def default_recipe() -> Config:
    """The bundled model's recipe: grayscale 128 px, small ResNet whose last stage keeps an 8 x 8 map (for
    heat maps), with a gate, shift-robust augmentation, sites drawn equally often with both classes
    equally likely within each view of each site, one threshold chosen for the worst site."""
    return Config(
        recipe="default",
        preprocess=PreprocessConfig(image_size=128, channels=1, crop_fraction=0.8, normalization="zscore"),
        augment=AugmentConfig(
            rotation=10,
            shear=0.0,
            zoom=0.1,
            shift=0.1,
            hflip=False,
            framing=0.2,
            brightness=0.3,
            contrast=0.3,
            gamma=0.5,
            blur=0.3,
            noise=0.05,
            erasing=0.3,
        ),
        data=DataConfig(val_fraction=0.1, site_balance=1.0, balanced_sampling=True, balance_views=True),
        model=ModelConfig(
            architecture="pneumo-resnet",
            options={"stem_stride": 4, "widths": [24, 48, 96, 96], "strides": [1, 2, 2, 1]},
            gate=True,
        ),
        train=TrainConfig(
            optimizer="adamw",
            lr=3e-3,
            weight_decay=0.05,
            batch_size=64,
            max_epochs=20,
            scheduler="onecycle",
            early_stopping_patience=None,
            monitor="val_auc_worst",
        ),
        calibration=CalibrationConfig(threshold_rule="worst-site"),
    )


RECIPES = {"seed": seed_recipe, "default": default_recipe}


def recipe(name: str) -> Config:
    """Return a fresh copy of a named recipe."""
    try:
        return RECIPES[name]()
    except KeyError:
        raise PneumoscanError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None
