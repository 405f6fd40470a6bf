"""Inference: batched prediction on image files and evaluation on labelled datasets."""

from .classifier import Classifier
from .evaluate import evaluate
from .optimize import optimize_for_inference
from .predict import Prediction, predict

__all__ = ["Classifier", "Prediction", "evaluate", "optimize_for_inference", "predict"]
