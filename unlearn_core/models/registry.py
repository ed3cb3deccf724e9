"""The registry of models by name: what each is and where its body is built, with no torch import."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Union

#: A body builder ``(channels, (height, width)) -> nn.Module``, or ``"module:function"`` naming one.
Builder = Union[Callable, str]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its name, its body builder and a one-line description."""

    name: str
    builder: Builder
    description: str

    def body(self, channels: int, image_size: tuple[int, int]):
        """The feature extractor for ``channels``-channel images of ``image_size`` (a builder named by
        ``"module:function"`` is imported here, on first use)."""
        builder = self.builder
        if isinstance(builder, str):
            module, _, attribute = builder.partition(":")
            builder = getattr(importlib.import_module(module), attribute)
        return builder(channels, image_size)


MODELS: dict[str, ModelInfo] = {}


def register_model(name: str, builder: Builder, description: str) -> None:
    MODELS[name] = ModelInfo(name, builder, description)


register_model("small_cnn", "unlearn_core.models.nets:_small_cnn", "2 conv + 1 hidden linear layer (default for 28x28)")
register_model("mlp", "unlearn_core.models.nets:_mlp", "2 hidden linear layers (256, 128)")
register_model("allcnn", "unlearn_core.models.nets:_allcnn", "All-CNN-C with BatchNorm (UNSC CIFAR-10 setting)")
register_model("resnet18", "unlearn_core.models.nets:_resnet18", "ResNet-18 with a CIFAR stem")
register_model("vgg11_bn", "unlearn_core.models.nets:_vgg11_bn", "VGG-11 with BatchNorm")
