"""Training: recipes, batched augmentation, the loop with exact resume, and DDP."""

from .checkpoint import TrainingError
from .recipes import RECIPES, Recipe, get_recipe, list_recipes
from .trainer import TrainResult, TrainRun, evaluate_top1, train

__all__ = [
    "RECIPES",
    "Recipe",
    "TrainResult",
    "TrainRun",
    "TrainingError",
    "evaluate_top1",
    "get_recipe",
    "list_recipes",
    "train",
]
