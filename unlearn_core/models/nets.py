"""The networks: :class:`UnlearnModel` (a :class:`Normalize` layer, a feature extractor ``body`` and a final linear
``head``), the bodies the registry names, and building, seeding and counting models (torch).
"""

from __future__ import annotations

import torch
from torch import nn

from unlearn_core.errors import ModelError
from unlearn_core.models.registry import MODELS


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics kept as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class UnlearnModel(nn.Module):
    """A classifier with an explicit feature extractor and linear head."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, mean, std, spec: dict):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.spec = spec

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(self.normalize(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _output_dim(body: nn.Module, channels: int, size: tuple[int, int]) -> int:
    with torch.no_grad():
        was_training = body.training
        body.eval()
        out = body(torch.zeros(1, channels, *size))
        body.train(was_training)
    return int(torch.flatten(out, 1).shape[1])


def _small_cnn(channels: int, size: tuple[int, int]) -> nn.Module:
    # ceil_mode keeps 1x1 maps alive on tiny images instead of pooling them away.
    conv = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(),
    )
    flat = _output_dim(conv, channels, size)
    return nn.Sequential(conv, nn.Linear(flat, 128), nn.ReLU(inplace=True), nn.Dropout(0.25))


def _mlp(channels: int, size: tuple[int, int]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size[0] * size[1], 256), nn.ReLU(inplace=True),
                         nn.Linear(256, 128), nn.ReLU(inplace=True))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def _allcnn(channels: int, size: tuple[int, int]) -> nn.Module:
    """All-CNN-C (Springenberg et al.) with BatchNorm, as in UNSC's CIFAR-10 setting."""
    layers = (_conv_bn(channels, 96, 3) + _conv_bn(96, 96, 3) + _conv_bn(96, 96, 3, stride=2) + [nn.Dropout(0.5)]
              + _conv_bn(96, 192, 3) + _conv_bn(192, 192, 3) + _conv_bn(192, 192, 3, stride=2) + [nn.Dropout(0.5)]
              + _conv_bn(192, 192, 3) + _conv_bn(192, 192, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten()])
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block with a 1x1 convolutional shortcut when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _resnet18(channels: int, size: tuple[int, int]) -> nn.Module:
    """ResNet-18 with the CIFAR stem: a 3x3 stride-1 first conv and no max-pool."""
    layers: list[nn.Module] = _conv_bn(channels, 64, 3)
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _vgg11_bn(channels: int, size: tuple[int, int]) -> nn.Module:
    layers: list[nn.Module] = []
    cin = channels
    for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += _conv_bn(cin, item, 3)
            cin = item
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def build_model(name: str, channels: int, image_size: tuple[int, int], num_classes: int, mean=None, std=None,
                seed: int | None = None) -> UnlearnModel:
    """Build a registered model; ``seed`` fixes its initial weights."""
    info = MODELS.get(name)
    if info is None:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if num_classes < 2:
        raise ModelError("a classifier needs at least 2 classes")
    mean = tuple(mean) if mean is not None else (0.5,) * channels
    std = tuple(std) if std is not None else (0.5,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ModelError(f"normalisation has {len(mean)} channel(s) but the images have {channels}")
    spec = {"name": name, "channels": channels, "image_size": list(image_size), "num_classes": num_classes,
            "mean": list(mean), "std": list(std)}
    body = info.body(channels, tuple(image_size))
    feature_dim = _output_dim(body, channels, tuple(image_size))
    model = UnlearnModel(body, feature_dim, num_classes, mean, std, spec)
    if seed is not None:
        seeded_init(model, seed)
    return model


def seeded_init(model: nn.Module, seed: int) -> None:
    """Re-draw every Conv/Linear weight and bias from a private generator.

    Same distributions as PyTorch's defaults (uniform in +-1/sqrt(fan_in)), but
    never touches the process-wide RNG, so models built in parallel threads
    each get exactly their own seed's weights.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                bound = 1.0 / max(fan_in, 1) ** 0.5
                for tensor in (module.weight, module.bias):
                    if tensor is not None:
                        tensor.copy_((torch.rand(tensor.shape, generator=generator) * 2 - 1) * bound)


def build_for_dataset(name: str, bundle, seed: int | None = None) -> UnlearnModel:
    """Build ``name`` sized for a :class:`~unlearn_core.data.DatasetBundle`."""
    return build_model(name, bundle.channels, bundle.image_size, bundle.num_classes, bundle.mean, bundle.std,
                       seed=seed)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def reinit_head(model: UnlearnModel, seed: int | None = None) -> None:
    """Xavier-normal re-initialisation (ReLU gain) of the head's weights; biases kept."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        weight = model.head.weight
        gain = nn.init.calculate_gain("relu")
        fan_in, fan_out = weight.shape[1], weight.shape[0]
        std = gain * (2.0 / (fan_in + fan_out)) ** 0.5
        weight.copy_(torch.randn(weight.shape, generator=generator) * std)
