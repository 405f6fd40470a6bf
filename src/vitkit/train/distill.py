"""DeiT's distillation (Touvron et al. 2021, Section 4): a student with a distillation token
learns the labels through its [class] head and a teacher's predictions through its
distillation head, so a CNN teacher's inductive bias reaches a ViT trained on little data.
At inference the two heads are averaged (`VisionTransformer.forward_head`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Preprocessing

DISTILL_KINDS = ("hard", "soft")


class Distillation:
    """(1 - alpha) CE([class] head, labels) + alpha D(distillation head, teacher), where D is
    the cross-entropy with the teacher's top class ('hard', DeiT's choice: alpha 0.5) or the
    KL divergence at temperature `tau` ('soft'). The teacher runs once per micro-batch under
    no_grad, in the step's autocast precision, on the student's (augmented) images converted
    to its own normalisation and size."""

    uses_labels = True

    def __init__(self, teacher: nn.Module, kind: str = "hard", alpha: float = 0.5,
                 tau: float = 1.0, label_smoothing: float = 0.0,
                 student: Preprocessing | None = None) -> None:
        if kind not in DISTILL_KINDS:
            raise ValueError(f"distill must be one of {', '.join(DISTILL_KINDS)}, not {kind!r}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"distill_alpha={alpha} must be between 0 and 1")
        self.teacher = teacher.eval().requires_grad_(False)
        self.kind, self.alpha, self.tau = kind, alpha, tau
        self.label_smoothing = label_smoothing
        self.student = student  # the normalisation the inputs arrive in (set by the trainer)

    def loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            taught = self.teacher_logits(images)
        cls, dist = net(images)  # a distilled model in distilled training returns both heads
        base = F.cross_entropy(cls.float(), labels, label_smoothing=self.label_smoothing)
        if self.kind == "hard":
            learned = F.cross_entropy(dist.float(), taught.argmax(dim=-1))
        else:
            learned = F.kl_div(F.log_softmax(dist.float() / self.tau, dim=-1),
                               F.log_softmax(taught / self.tau, dim=-1),
                               reduction="batchmean", log_target=True) * self.tau**2
        return (1 - self.alpha) * base + self.alpha * learned

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for the student's normalised inputs: the normalisation undone
        and the teacher's applied, resized to the teacher's image size when it differs."""
        teacher = self.teacher
        if next(teacher.parameters()).device != images.device:
            teacher.to(images.device)
        inputs = images
        theirs = teacher.meta.preprocessing
        if self.student is not None and (theirs.mean, theirs.std) != (self.student.mean,
                                                                     self.student.std):
            inputs = _renormalised(images, self.student, theirs)
        size = tuple(teacher.config.img_size)
        if tuple(inputs.shape[-2:]) != size:
            inputs = F.interpolate(inputs, size=size, mode="bilinear", antialias=True,
                                   align_corners=False)
        return teacher(inputs).float()

    def weights(self, model: nn.Module) -> nn.Module:
        """What the run saves: the student, whose heads are averaged at inference."""
        return model


def _renormalised(images: torch.Tensor, student: Preprocessing,
                  teacher: Preprocessing) -> torch.Tensor:
    def column(values) -> torch.Tensor:
        return torch.tensor(values, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)

    pixels = images * column(student.std) + column(student.mean)
    return (pixels - column(teacher.mean)) / column(teacher.std)
