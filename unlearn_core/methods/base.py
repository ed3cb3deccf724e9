"""The unlearning-method interface and the registry's table.

A method is a subclass of :class:`UnlearningMethod` in its own module in this
package, decorated with :func:`register`. It declares its hyperparameters as
:class:`~unlearn_core.params.Param` data; the CLI reads ``--param`` values
against them and the app draws its widgets from them. ``unlearn(task,
params)`` gets a :class:`UnlearnTask` (the original model, the forget and
remaining data, a progress reporter) and returns an :class:`UnlearnOutput`.
:func:`unlearn_core.methods.get_method` looks a method up by name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from unlearn_core.data import DatasetBundle, augment_batch
from unlearn_core.errors import ParameterError
from unlearn_core.forget import KINDS as FORGET_KINDS, ForgetSplit
from unlearn_core.models import UnlearnModel
from unlearn_core.params import Param
from unlearn_core.progress import Reporter
from unlearn_core.training import TrainRecipe

__all__ = ["METHODS", "Param", "UnlearnOutput", "UnlearnTask", "UnlearningMethod", "freeze_batchnorm", "register"]


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


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode so running statistics stay frozen."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
