"""Which layers have a retained space, and the rows a layer's input contributes to it."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from unlearn_core.errors import MethodError


def tracked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``Conv2d`` and ``Linear`` layer by qualified name, in module order."""
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                raise MethodError(f"layer {name!r} is a grouped convolution (groups={module.groups}); the null-space "
                                  "projection supports groups=1 only")
            layers[name] = module
        elif isinstance(module, nn.Linear):
            layers[name] = module
    if not layers:
        raise MethodError("the model has no Conv2d or Linear layer to constrain")
    return layers


def layer_input_dim(module: nn.Module) -> int:
    """Width of one representation column: ``in_features`` or ``C_in * kh * kw``."""
    if isinstance(module, nn.Conv2d):
        return module.in_channels * module.kernel_size[0] * module.kernel_size[1]
    return module.in_features


def representation_rows(module: nn.Module, layer_input: torch.Tensor) -> torch.Tensor:
    """The layer's representation columns as rows, ``(columns, input_dim)``.

    For a conv layer, one row per output location: the input patch the kernel
    sees there, ordered like ``weight.view(C_out, -1)``, border patches
    (zero padding) included.
    """
    if isinstance(module, nn.Conv2d):
        x = layer_input
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            # 'same' padding and reflect/replicate/circular modes: pad exactly as the layer does, then unfold.
            mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
            padding = 0
        else:
            padding = module.padding
        patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return layer_input.reshape(-1, layer_input.shape[-1])
