"""Uploaded original models: checked once (size caps, keys, shapes, dtypes, a probe batch), held in memory only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unlearn_core.errors import CheckpointError

if TYPE_CHECKING:
    import torch

PROBE_SAMPLES = 256


@dataclass
class UploadedModel:
    """An accepted upload: weights checked key by key, in the model's dtypes, and by a probe batch."""

    sha256: str
    dataset: str
    model: str
    seed: int
    network: torch.nn.Module
    test_accuracy: float
    nbytes: int

    @property
    def key(self) -> str:
        # Its own namespace: never a key of the training cache, so no upload can stand in for a trained model.
        return f"upload-{self.sha256[:16]}"



def prepare_with_upload(choice, uploaded: UploadedModel, progress=None, cancel=None,
                        with_retrain: bool = True):
    """A setup whose original is an accepted upload (``choice``: a ``state.Choice``); the retrained reference is
    the shared trained one."""
    import copy
    import time

    from unlearn_core.data import load_dataset
    from unlearn_core.device import pick_device
    from unlearn_core.forget import ForgetSpec, index_root
    from unlearn_core.pipeline import Setup
    from unlearn_core.training import TrainedModel, default_recipe, get_retrained

    started = time.perf_counter()
    bundle = load_dataset(choice.dataset)
    split = ForgetSpec.parse(choice.forget, allow_files=False, files_root=index_root()).resolve(bundle, choice.seed)
    device = pick_device(choice.device)
    recipe = default_recipe(bundle.name)
    # A copy per setup: methods start from setup.original.model, and nothing may touch the accepted upload.
    network = copy.deepcopy(uploaded.network).to(device).eval()
    original = TrainedModel(network, uploaded.key, {"uploaded": True, "sha256": uploaded.sha256,
                                                    "test_accuracy": uploaded.test_accuracy},
                            True, time.perf_counter() - started)
    retrained = get_retrained(bundle, split, choice.model, choice.seed, recipe, device, progress, cancel) \
        if with_retrain else None
    return Setup(bundle, split, choice.model, choice.seed, device, recipe, original, retrained)



def probe_outputs(network, bundle, samples: int = PROBE_SAMPLES) -> None:
    """Run a batch of real test images through ``network``; refuse the model if any output is not finite.

    Finite weights can still give inf/NaN logits: a normalisation std of 0, a mean of 1e30 with a std of
    1e-30, an integer weight of 2**62. Such a model was accepted as the original (10 % accuracy) and made every
    later fine-tune diverge.
    """
    import torch

    from unlearn_core.data import to_float
    from unlearn_core.training import predict_logits

    count = min(samples, int(bundle.test_y.numel()))
    logits = predict_logits(network, bundle.test_x[:count], torch.device("cpu"))
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=1).sum())
        raise CheckpointError(f"refused: the model's outputs are NaN or infinite on {bad} of {count} test images "
                              "(check the normalisation statistics and weights it was saved with)")
    with torch.no_grad():
        features = network.features(to_float(bundle.test_x[:min(count, 32)]))
    if not torch.isfinite(features).all():
        raise CheckpointError("refused: the model's features are NaN or infinite on test images")


def accept_upload(data: bytes, dataset: str, model: str, seed: int = 0) -> UploadedModel:
    """Check an uploaded checkpoint fully, once: size caps, zip directory, keys, shapes, dtypes, a probe batch.

    Returns an :class:`UploadedModel` keyed by the file's SHA-256; nothing is written anywhere.
    """
    import hashlib

    import torch

    from unlearn_core.data import load_dataset
    from unlearn_app.jobs import estimate_bytes
    from unlearn_core.training import accuracy

    network = load_uploaded_checkpoint(data, dataset, model, seed)
    bundle = load_dataset(dataset)
    with torch.no_grad():
        probe_outputs(network, bundle)
    sha = hashlib.sha256(bytes(data)).hexdigest()
    test_accuracy = float(accuracy(network, bundle.test_x, bundle.test_y, torch.device("cpu")))
    return UploadedModel(sha, dataset, model, int(seed), network, test_accuracy, estimate_bytes(network))


def load_uploaded_checkpoint(data: bytes, dataset: str, model: str, seed: int = 0):
    """Build ``model`` for ``dataset`` and load uploaded weights into it.

    Raises ``CheckpointError`` if they do not fit."""
    from unlearn_core.checkpoints import load_state_strict, read_checkpoint
    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    if not data:
        raise CheckpointError("the uploaded file is empty")
    checkpoint = read_checkpoint(bytes(data))  # the UNLEARN_MAX_UPLOAD_MB and UNLEARN_MAX_UNPACKED_MB caps apply
    network = build_for_dataset(model, load_dataset(dataset), seed=seed)
    load_state_strict(network, checkpoint["state_dict"])
    network.eval()
    return network

