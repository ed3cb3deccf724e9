"""BS-nearest-wrong: a variant of boundary shrink that always moves a forget sample to a wrong class.

Not the reference method (see :mod:`unlearn_core.methods.bs`): after the FGSM
step the true class's logit is masked, so every forget sample is labelled
with the highest-scoring *other* class at the perturbed point. It forgets far
more than BS (on mnist5k class 7, Acc_f 0 against BS's ~90) and is kept for
comparison, under its own name; earlier versions of this project shipped it
as ``bs``.
"""

from __future__ import annotations

from unlearn_core.methods.base import UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.methods.bs import BS_PARAMS, shrink_boundary


@register
class BoundaryShrinkNearestWrong(UnlearningMethod):
    name = "bs_nearest_wrong"
    title = "BS-nearest-wrong (variant)"
    summary = ("Boundary shrink with the true class masked: every forget sample moves to the class its FGSM copy "
               "scores highest among the wrong ones. Not the published BS.")
    forget_kinds = ("class",)
    params = BS_PARAMS

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        return shrink_boundary(task, params, exclude_true=True)
