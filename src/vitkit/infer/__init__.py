"""Inference: batched prediction on image files and evaluation on labelled datasets."""

from .evaluate import evaluate
from .predict import Prediction, predict

__all__ = ["Prediction", "evaluate", "predict"]
