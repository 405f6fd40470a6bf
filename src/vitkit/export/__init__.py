"""Export: a trained ViT as an ONNX file (fp32, or int8 dynamic/static through ONNX Runtime's
quantization), and running such a file with vitkit's own preprocessing. Needs the `serve`
extra (onnx, onnxruntime), imported only when used."""

from .metadata import read_metadata
from .onnx import DEFAULT_OPSET, INT8_MODES, export_onnx
from .runtime import OnnxClassifier, predict_onnx

__all__ = ["DEFAULT_OPSET", "INT8_MODES", "OnnxClassifier", "export_onnx", "predict_onnx",
           "read_metadata"]
