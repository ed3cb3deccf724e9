"""Projecting weight gradients out of the retained spaces, and measuring what an update changed."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from unlearn_core.data import to_float
from unlearn_core.errors import MethodError
from unlearn_core.nullspace.layers import layer_input_dim, tracked_layers


class GradientProjector:
    """``P = U U^T`` per layer, keyed by the module itself; projects gradients out of the retained space.

    ``projection_matrix(module)`` gives ``P`` explicitly; internally the cheaper of ``U`` and ``P`` is kept.
    """

    def __init__(self, model: nn.Module, bases: dict[str, torch.Tensor]):
        layers = tracked_layers(model)
        missing = set(layers) - set(bases)
        if missing:
            raise MethodError(f"no retained basis for layer(s) {', '.join(sorted(missing))}")
        self.names: dict[nn.Module, str] = {}
        # Either ("basis", U) or ("projector", U U^T), whichever multiplies faster: g U U^T costs 2*r*d per row,
        # g P costs d*d.
        self.operators: dict[nn.Module, tuple[str, torch.Tensor]] = {}
        for name, module in layers.items():
            basis = bases[name].to(module.weight.device, module.weight.dtype)
            if basis.shape[0] != layer_input_dim(module):
                raise MethodError(f"basis of layer {name!r} has {basis.shape[0]} rows, the layer takes "
                                  f"{layer_input_dim(module)} inputs")
            if 2 * basis.shape[1] < basis.shape[0]:
                self.operators[module] = ("basis", basis)
            else:
                self.operators[module] = ("projector", basis @ basis.T)
            self.names[module] = name
        self.model = model

    def projection_matrix(self, module: nn.Module) -> torch.Tensor:
        kind, matrix = self.operators[module]
        return matrix @ matrix.T if kind == "basis" else matrix

    @staticmethod
    def _retained_part(flat: torch.Tensor, operator: tuple[str, torch.Tensor]) -> torch.Tensor:
        kind, matrix = operator
        return (flat @ matrix) @ matrix.T if kind == "basis" else flat @ matrix

    def removed_share(self) -> dict[str, float]:
        """Per layer, the share of the current weight gradient's squared norm that projection removes."""
        shares = {}
        for module, operator in self.operators.items():
            grad = module.weight.grad
            if grad is None:
                continue
            flat = grad.reshape(grad.shape[0], -1)
            total = float((flat ** 2).sum())
            removed = float((self._retained_part(flat, operator) ** 2).sum())
            shares[self.names[module]] = removed / total if total > 0 else 0.0
        return shares

    @torch.no_grad()
    def project(self, model: nn.Module | None = None) -> None:
        """Remove the retained-space component of every layer weight's gradient; zero all 1-D gradients."""
        model = model or self.model
        for module, operator in self.operators.items():
            grad = module.weight.grad
            if grad is not None:
                flat = grad.view(grad.shape[0], -1)
                flat.sub_(self._retained_part(flat, operator))
        for parameter in model.parameters():
            if parameter.grad is not None and parameter.grad.dim() <= 1:
                parameter.grad.zero_()

    __call__ = project


@torch.no_grad()
def preactivation_drift(before: nn.Module, after: nn.Module, images: torch.Tensor, device=None,
                        batch_size: int = 512) -> dict[str, float]:
    """Per layer, ``||out_after - out_before|| / ||out_before||`` of the layer outputs on ``images``, eval mode.

    Both models must have the same architecture; layers are matched by qualified name.
    """
    device = device or next(after.parameters()).device
    current: dict[str, torch.Tensor] = {}
    squared_diff: dict[str, float] = {}
    squared_old: dict[str, float] = {}

    def keep_before(name: str) -> Callable:
        def hook(module, inputs, output):
            # A copy: an in-place activation after the layer would otherwise rewrite what we keep.
            current[name] = output.detach().float().clone()
        return hook

    def compare_after(name: str) -> Callable:
        def hook(module, inputs, output):
            old = current.pop(name)
            squared_diff[name] = squared_diff.get(name, 0.0) + float(((output.detach().float() - old) ** 2).sum())
            squared_old[name] = squared_old.get(name, 0.0) + float((old ** 2).sum())
        return hook

    handles = [module.register_forward_hook(keep_before(name)) for name, module in tracked_layers(before).items()]
    handles += [module.register_forward_hook(compare_after(name)) for name, module in tracked_layers(after).items()]
    modes = (before.training, after.training)
    before.eval()
    after.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size]).to(device)
            before(x)
            after(x)
    finally:
        for handle in handles:
            handle.remove()
        before.train(modes[0])
        after.train(modes[1])
    return {name: (squared_diff[name] / squared_old[name]) ** 0.5 if squared_old[name] > 0
            else squared_diff[name] ** 0.5 for name in squared_diff}
