"""Inference: batched prediction on image files, evaluation on labelled datasets, and
frozen-feature evaluation (few-shot, linear probe, k-NN)."""

from .backends import BackendChoice, choose_backend
from .classifier import Classifier
from .evaluate import evaluate
from .features import extract_features
from .fewshot import few_shot_accuracy
from .frozen import evaluate_frozen
from .optimize import optimize_for_inference
from .predict import Prediction, calibration_images, predict, predict_onnx
from .probes import knn_accuracy, linear_probe_accuracy

__all__ = ["BackendChoice", "Classifier", "Prediction", "calibration_images",
           "choose_backend", "evaluate", "evaluate_frozen", "extract_features",
           "few_shot_accuracy", "knn_accuracy", "linear_probe_accuracy",
           "optimize_for_inference", "predict", "predict_onnx"]
