"""Training: recipes, batched augmentation, the loop with exact resume, and DDP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TrainingError
from .recipes import RECIPES, Recipe, get_recipe, list_recipes

if TYPE_CHECKING:
    from .plan import PlannedRun, plan_training
    from .trainer import TrainResult, TrainRun, train


def __getattr__(name: str) -> Any:
    """The loop (which needs torch) on first use, so the CLI's argument parsing starts fast."""
    if name in ("TrainResult", "TrainRun", "train"):
        from . import trainer

        return getattr(trainer, name)
    if name in ("PlannedRun", "plan_training"):
        from . import plan

        return getattr(plan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RECIPES",
    "PlannedRun",
    "Recipe",
    "TrainResult",
    "TrainRun",
    "TrainingError",
    "get_recipe",
    "list_recipes",
    "plan_training",
    "train",
]
