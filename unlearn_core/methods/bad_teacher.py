"""Bad Teacher (Chundawat et al., AAAI 2023): a competent and an incompetent teacher.

The student starts as the original model and is distilled, with KL at
temperature T, toward the original model (the competent teacher) on a share of
the remaining data and toward a randomly initialised model of the same
architecture (the incompetent teacher) on the forget data.
"""

from __future__ import annotations

import numpy as np
import torch

from unlearn_core.methods._common import batch_images, distill_kl, make_optimizer, train_steps
from unlearn_core.methods.base import Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register
from unlearn_core.models import build_for_dataset


@register
class BadTeacher(UnlearningMethod):
    name = "bad_teacher"
    title = "Bad Teacher"
    summary = "Distil from the original model on remaining data and from a random model on forget data."
    params = (
        Param("lr", float, 1e-3, "Adam learning rate", low=1e-7, high=0.1, log=True),
        Param("epochs", int, 2, "passes over forget + sampled remaining data", low=1, high=100),
        Param("retain_fraction", float, 0.3, "share of the remaining data used (the paper uses 30%)",
              low=0.0, high=1.0),
        Param("temperature", float, 1.0, "distillation temperature T", low=0.1, high=20.0),
        Param("batch_size", int, 64, "mini-batch size", low=1, high=4096),
    )

    def unlearn(self, task: UnlearnTask, params: dict) -> UnlearnOutput:
        good_teacher = task.frozen_original()
        bad_teacher = build_for_dataset(task.model_name, task.bundle, seed=task.seed * 1000 + 7919).to(task.device)
        bad_teacher.eval()
        for p in bad_teacher.parameters():
            p.requires_grad_(False)
        student = task.copy_original()

        retain_x, retain_y = task.retain_data()
        forget_x, _ = task.forget_data()
        rng = np.random.default_rng(task.seed * 1000 + 3)
        n_retain = int(round(params["retain_fraction"] * len(retain_y)))
        chosen = torch.as_tensor(np.sort(rng.choice(len(retain_y), n_retain, replace=False)), dtype=torch.long)
        images = torch.cat([forget_x, retain_x[chosen]])
        is_forget = torch.cat([torch.ones(len(forget_x), dtype=torch.bool),
                               torch.zeros(n_retain, dtype=torch.bool)]).to(task.device)
        optimizer = make_optimizer("adam", student.parameters(), params["lr"])
        temperature = params["temperature"]

        def teacher_loss(batch, _epoch):
            x = batch_images(images, batch, task)
            with torch.no_grad():
                target_logits = torch.where(is_forget[batch.to(task.device)][:, None], bad_teacher(x),
                                            good_teacher(x))
            return distill_kl(student(x), target_logits, temperature)

        stats = train_steps(student, task, len(images), params["batch_size"], params["epochs"], teacher_loss,
                            optimizer, "bad teacher")
        return UnlearnOutput(student, {**stats, "retain_used": n_retain})
