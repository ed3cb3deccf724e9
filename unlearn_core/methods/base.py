"""The unlearning-method interface, hyperparameter declarations and the registry.

A method is a subclass of :class:`UnlearningMethod` in its own module in this
package, decorated with :func:`register`. It declares its hyperparameters as
:class:`Param` data; the CLI reads ``--param`` values against them and the
app draws its widgets from them. ``unlearn(task, params)`` gets a
:class:`UnlearnTask` (the original model, the forget and remaining data, a
progress reporter) and returns an :class:`UnlearnOutput`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from unlearn_core.data import DatasetBundle, augment_batch, to_float
from unlearn_core.errors import MethodError, ParameterError
from unlearn_core.forget import KINDS as FORGET_KINDS, ForgetSplit
from unlearn_core.models import UnlearnModel
from unlearn_core.progress import Reporter, check_finite, oom_guard
from unlearn_core.training import TrainRecipe, minibatches

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter.

    ``type`` is ``float``, ``int``, ``bool`` or ``str``; ``low``/``high``
    bound numbers (inclusive), ``choices`` restricts strings, ``log`` asks
    widgets for a log scale.
    """

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    log: bool = False

    def coerce(self, value: Any) -> Any:
        """Convert and validate a value (native or text); raise :class:`ParameterError` if bad."""
        where = f"parameter {self.name!r}"
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ParameterError(f"{where} must be true or false, got {value!r}")
        if self.type in (int, float):
            try:
                if isinstance(value, bool):
                    raise ValueError
                number = float(value) if self.type is float else _as_int(value)
            except (TypeError, ValueError, OverflowError):
                raise ParameterError(f"{where} must be {'a number' if self.type is float else 'a whole number'}, "
                                     f"got {str(value)[:40]!r}") from None
            if self.type is float and not math.isfinite(number):
                raise ParameterError(f"{where} must be finite, got {value!r}")
            if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                low = "-inf" if self.low is None else f"{self.low:g}"
                high = "inf" if self.high is None else f"{self.high:g}"
                raise ParameterError(f"{where} must be in [{low}, {high}], got {str(number)[:40]}")
            return number
        text = str(value).strip()
        if self.choices is not None and text not in self.choices:
            raise ParameterError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return text

    def describe(self) -> dict:
        out = {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help}
        if self.low is not None:
            out["low"] = self.low
        if self.high is not None:
            out["high"] = self.high
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.log:
            out["log"] = True
        return out


def _as_int(value: Any) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


@dataclass
class UnlearnTask:
    """Everything a method may use. Never modify ``original`` in place: copy it."""

    bundle: DatasetBundle
    split: ForgetSplit
    original: UnlearnModel
    device: torch.device
    seed: int
    recipe: TrainRecipe
    model_name: str
    reporter: Reporter = field(default_factory=Reporter)

    def copy_original(self) -> UnlearnModel:
        """A trainable deep copy of the original model on the task's device."""
        model = copy.deepcopy(self.original).to(self.device)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    def frozen_original(self) -> UnlearnModel:
        """The original model in eval mode with gradients off (shared, read-only)."""
        self.original.to(self.device).eval()
        return self.original

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + offset)

    def _subset(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.bundle.train_x[idx], self.bundle.train_y[idx]

    def forget_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Forget images (raw ``uint8``) and their true labels."""
        return self._subset(self.split.forget_idx)

    def retain_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Remaining images (raw ``uint8``) and their labels."""
        return self._subset(self.split.retain_idx)

    def augment(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The data set's training augmentation on a float batch."""
        return augment_batch(images, self.bundle.augmentation, self.bundle.crop_padding, generator)


@dataclass
class UnlearnOutput:
    """What a method returns: the unlearned model and anything worth drawing.

    ``seconds`` overrides the measured wall time (only ``retrain`` uses it,
    to report the training time of a cached reference).
    ``diagnostics_seconds`` is time spent measuring things for display
    (not unlearning); it is subtracted from the method's reported time.
    """

    model: UnlearnModel
    artifacts: dict = field(default_factory=dict)
    seconds: float | None = None
    diagnostics_seconds: float = 0.0


class UnlearningMethod:
    """Base class of every method. Subclasses set the class attributes and ``unlearn``.

    ``forget_kinds`` lists the forget-set kinds (``class``, ``random``,
    ``subclass``, ``indices``) the method was designed for; it still runs on
    the others, but its report says ``in_scope: false`` with ``scope_note``.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    forget_kinds: ClassVar[tuple[str, ...]] = FORGET_KINDS
    scope_note: ClassVar[str] = ""

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        raise NotImplementedError

    @classmethod
    def param(cls, name: str) -> Param:
        for declared in cls.params:
            if declared.name == name:
                return declared
        raise ParameterError(f"method {cls.name!r} has no parameter {name!r}; it takes "
                             f"{', '.join(p.name for p in cls.params) or 'none'}")

    @classmethod
    def defaults(cls) -> dict:
        return {p.name: p.default for p in cls.params}

    @classmethod
    def resolve_params(cls, overrides: dict | None = None) -> dict:
        """Defaults updated by ``overrides`` (text or native values), each validated."""
        values = cls.defaults()
        for key, value in (overrides or {}).items():
            values[key] = cls.param(key).coerce(value)
        return values

    @classmethod
    def scope(cls, forget_kind: str) -> tuple[bool, str]:
        """Whether the method was designed for this kind of forget set, and if not, one line saying why."""
        if forget_kind in cls.forget_kinds:
            return True, ""
        designed = " / ".join(cls.forget_kinds)
        reason = (f"{cls.title or cls.name} was designed for {designed} forgetting, not {forget_kind}: "
                  f"the result is outside its scope")
        if cls.scope_note:
            reason += f" ({cls.scope_note})"
        return False, reason

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "title": cls.title, "summary": cls.summary,
                "forget_kinds": list(cls.forget_kinds), "params": [p.describe() for p in cls.params]}


METHODS: dict[str, type[UnlearningMethod]] = {}


def register(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: add a method to the registry under ``cls.name``."""
    if not cls.name or cls.name != cls.name.lower():
        raise ValueError(f"method name must be non-empty lower case, got {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[UnlearningMethod]:
    from unlearn_core.methods import load_all

    load_all()
    key = (name or "").strip().lower()
    if key not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[key]


def fit_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, task: UnlearnTask,
                   optimizer: torch.optim.Optimizer, epochs: int, batch_size: int, *, augment: bool = False,
                   augment_mask: torch.Tensor | None = None, scheduler_per_step: Callable | None = None,
                   after_backward: Callable[[nn.Module], None] | None = None,
                   train_mode: Callable[[nn.Module], None] | None = None, stage: str = "fine-tune",
                   generator_offset: int = 0) -> dict:
    """Cross-entropy fine-tuning on raw images with hard labels, shared by many methods.

    ``augment_mask`` marks which samples get augmentation (NatMU augments
    remaining data but not hybrids). ``after_backward`` edits gradients (UNSC's
    projection, SalUn's mask). ``train_mode`` sets module modes each epoch
    (e.g. BatchNorm kept in eval). Raises on a non-finite loss and on cancel.
    """
    reporter = task.reporter.child(stage)
    generator = task.generator(generator_offset)
    loss_fn = nn.CrossEntropyLoss()
    steps = max(1, -(-len(labels) // batch_size))
    last_loss = float("nan")
    for epoch in range(1, epochs + 1):
        model.train()
        if train_mode is not None:
            train_mode(model)
        total, seen = 0.0, 0
        for step, batch in enumerate(minibatches(len(labels), batch_size, generator), start=1):
            x = to_float(images[batch]).to(task.device)
            y = labels[batch].to(task.device)
            if augment:
                augmented = task.augment(x, generator)
                if augment_mask is not None:
                    keep = augment_mask[batch].to(task.device)[:, None, None, None]
                    augmented = torch.where(keep, augmented, x)
                x = augmented
            optimizer.zero_grad(set_to_none=True)
            with oom_guard(stage, batch_size, task.device):
                loss = loss_fn(model(x), y)
                check_finite(loss.item(), stage)
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                optimizer.step()
            if scheduler_per_step is not None:
                scheduler_per_step()
            total += loss.item() * len(y)
            seen += len(y)
            reporter(epoch=epoch, epochs=epochs, step=step, steps=steps, loss=total / seen)
            reporter.observe(model, epoch=epoch, epochs=epochs, step=step, steps=steps, loss=total / seen)
        last_loss = total / max(seen, 1)
    model.eval()
    return {"final_loss": last_loss}


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode so running statistics stay frozen."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
