"""Inference: batched prediction on image files and evaluation on labelled datasets."""

from .evaluate import evaluate
from .optimize import optimize_for_inference
from .predict import Prediction, predict

__all__ = ["Prediction", "evaluate", "optimize_for_inference", "predict"]
