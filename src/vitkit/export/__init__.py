"""Export: a trained ViT as an ONNX file (fp32, or int8 dynamic/static through ONNX Runtime's
quantization), and running such a file with vitkit's own preprocessing; a ViT compiled by
OpenVINO as an inference path. Needs the `serve` extra (onnx, onnxruntime) or the `openvino`
one, imported only when used. Predicting on image files through an ONNX file is
`vitkit.infer.predict_onnx`."""

from typing import Any

from .metadata import read_metadata
from .onnx import DEFAULT_OPSET, INT8_MODES, export_onnx
from .openvino import OpenVinoRunner, openvino_runner, openvino_version
from .runtime import OnnxClassifier, OnnxRunner, onnx_int8_runner


def __getattr__(name: str) -> Any:
    """Names that moved, each with the place it moved to (an ImportError, so that
    `from vitkit.export import predict_onnx` shows where it went)."""
    if name == "predict_onnx":
        raise ImportError("vitkit.export.predict_onnx moved to vitkit.infer.predict_onnx "
                             "(export sits below inference, which can now choose ONNX "
                             "Runtime): from vitkit.infer import predict_onnx")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_OPSET", "INT8_MODES", "OnnxClassifier", "OnnxRunner", "OpenVinoRunner",
           "export_onnx", "onnx_int8_runner", "openvino_runner", "openvino_version",
           "read_metadata"]
