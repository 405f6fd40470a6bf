"""DeiT's distillation from a teacher: the student gains a distillation token and head, the
loss is the one DeiT writes (hard or soft), the teacher runs once per micro-batch without
gradients and sees the pixels in its own normalisation, a stopped run resumes bitwise, and
the saved student averages its two heads."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import vitkit
from tests.conftest import TINY, digits_subset, one_line_error
from vitkit.cli.main import main
from vitkit.data import DataSplits
from vitkit.models import Preprocessing
from vitkit.train.distill import Distillation

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def teacher_folder(tmp_path):
    """A ResNet-20 for the digits (random weights: what it teaches is beside the point)."""
    torch.manual_seed(1)
    teacher = vitkit.create_model("resnet20", num_classes=10, in_chans=1, img_size=8)
    teacher.meta.preprocessing = Preprocessing(mean=(0.3,), std=(0.4,), crop_pct=1.0)
    vitkit.save_pretrained(teacher, tmp_path / "teacher", class_names=[str(i) for i in range(10)])
    return tmp_path / "teacher"


class _Heads(torch.nn.Module):
    """A stand-in student: fixed [class] and distillation logits."""

    def __init__(self, cls, dist):
        super().__init__()
        self.cls, self.dist = cls, dist

    def forward(self, images):
        return self.cls, self.dist


class _Teacher(torch.nn.Module):
    def __init__(self, logits, img_size=(8, 8)):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.logits, self.seen = logits, []
        self.config = type("Config", (), {"img_size": img_size, "num_classes": 3})()
        self.meta = type("Meta", (), {"preprocessing": Preprocessing(mean=(0.5,), std=(0.25,))})()

    def forward(self, images):
        self.seen.append((images, torch.is_grad_enabled()))
        return self.logits + self.weight


def test_the_losses_are_deits():
    cls, dist = torch.randn(4, 3), torch.randn(4, 3)
    labels, taught = torch.tensor([0, 1, 2, 1]), torch.randn(4, 3)
    images = torch.zeros(4, 1, 8, 8)
    hard = Distillation(_Teacher(taught), "hard", alpha=0.5).loss(_Heads(cls, dist), images,
                                                                 labels)
    expected = 0.5 * F.cross_entropy(cls, labels) + 0.5 * F.cross_entropy(dist,
                                                                          taught.argmax(-1))
    assert hard.item() == pytest.approx(expected.item(), rel=1e-6)
    soft = Distillation(_Teacher(taught), "soft", alpha=0.3, tau=2.0).loss(_Heads(cls, dist),
                                                                          images, labels)
    p_teacher = F.softmax(taught / 2, -1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(dist / 2, -1))).sum(-1).mean() * 4
    assert soft.item() == pytest.approx((0.7 * F.cross_entropy(cls, labels) + 0.3 * kl).item(),
                                        rel=1e-5)


def test_the_teacher_runs_once_without_gradients_on_its_own_normalisation():
    teacher = _Teacher(torch.randn(2, 3), img_size=(4, 4))
    objective = Distillation(teacher, student=Preprocessing(mean=(0.1,), std=(0.2,)))
    images = torch.randn(2, 1, 8, 8, requires_grad=True)
    objective.loss(_Heads(torch.randn(2, 3, requires_grad=True), torch.randn(2, 3)), images,
                   torch.tensor([0, 1]))
    assert len(teacher.seen) == 1 and teacher.seen[0][1] is False
    seen = teacher.seen[0][0]
    pixels = images.detach() * 0.2 + 0.1  # what the student's inputs stand for
    expected = F.interpolate((pixels - 0.5) / 0.25, size=(4, 4), mode="bilinear",
                             antialias=True, align_corners=False)
    assert seen.shape == (2, 1, 4, 4) and torch.allclose(seen, expected, atol=1e-6)
    assert not teacher.weight.requires_grad


def _planned(out, teacher, **options):
    splits = DataSplits(train=digits_subset(64), val=digits_subset(32, "test"), test=None,
                        name="digits")
    return vitkit.plan_training(
        splits, out, model="vit_digits_patch2_8", model_args=TINY, teacher=teacher,
        precision="fp32", progress=False, seed=4, **options,
        overrides={"epochs": 2, "batch_size": 16, "accum_steps": 2, "warmup_epochs": 0.5,
                   "distill": "soft"})


def test_a_distilled_run_resumes_bitwise_and_saves_a_student_that_averages(tmp_path,
                                                                            teacher_folder):
    whole = _planned(tmp_path / "whole", teacher_folder)
    assert whole.model.dist_token is not None and whole.model.distilled_training
    whole.fit()
    assert not _planned(tmp_path / "split", teacher_folder, stop_after=3).fit()["finished"]
    assert _planned(tmp_path / "split", teacher_folder, resume=True).fit()["finished"]
    a = torch.load(tmp_path / "whole" / "state" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "state" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    student = vitkit.load_pretrained(tmp_path / "whole" / "checkpoint")
    assert student.config.distilled and not student.distilled_training
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        tokens = student.forward_features(x)
        both = (student.head(tokens[:, 0]) + student.head_dist(tokens[:, 1])) / 2
        assert torch.allclose(student(x), both, atol=1e-6)
    assert json.loads((tmp_path / "whole" / "recipe.json").read_text())["distill"] == "soft"


def test_distillation_from_the_command_line(tmp_path, capsys, teacher_folder):
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--out", str(out), "--model", "vit_digits_patch2_8",
            *[f"--model-arg={k}={v}" for k, v in TINY.items()], "--no-progress",
            "--epochs", "1", "--batch-size", "256", "--teacher", str(teacher_folder)]
    assert main([*args, "--distill", "hard"]) == 0
    assert vitkit.load_pretrained(out / "checkpoint").config.distilled
    wrong = vitkit.create_model("resnet20", num_classes=3, in_chans=1, img_size=8)
    vitkit.save_pretrained(wrong, tmp_path / "wrong")
    capsys.readouterr()
    code = main(["train", "--data", "digits", "--out", str(tmp_path / "b"), "--teacher",
                 str(tmp_path / "wrong"), "--no-progress"])
    one_line_error(capsys, code, "the teacher predicts 3 classes but the data has 10")
