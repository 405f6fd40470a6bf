"""Training: recipes, batched augmentation, the loop with exact resume, and DDP."""

from ..errors import TrainingError
from .recipes import RECIPES, Recipe, get_recipe, list_recipes
from .trainer import TrainResult, TrainRun, train

__all__ = [
    "RECIPES",
    "Recipe",
    "TrainResult",
    "TrainRun",
    "TrainingError",
    "get_recipe",
    "list_recipes",
    "train",
]
