"""Retrain: the gold-standard reference, trained on the remaining data only.

Same recipe and initial weights as the original model. The checkpoint is
cached, so repeated requests cost nothing; the reported time is always the
real training time.
"""

from __future__ import annotations

import copy

from unlearn_core.methods.base import UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.training import get_retrained


@register
class Retrain(UnlearningMethod):
    name = "retrain"
    title = "Retrain (reference)"
    summary = "Train from the same initial weights on the remaining data only. Exact, and the slowest."
    params = ()

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        trained = get_retrained(task.bundle, task.split, task.model_name, task.seed, task.recipe, task.device,
                                task.reporter.progress, task.reporter.cancel)
        return UnlearnOutput(copy.deepcopy(trained.model), {"from_cache": trained.from_cache},
                             seconds=trained.train_seconds)
