"""One interface over every runtime an exported model can run in: torch, ONNX Runtime, TFLite, Core ML.

`open_runner(path, preprocess)` picks the runtime from the path (a bundle folder, ``.onnx``,
``.tflite``, ``.mlpackage``) and returns a `Runner`. Every runner takes the same input: uint8
NHWC pixels from `Preprocess.to_pixels` (stacked), and applies the contract's normalisation and
layout itself as its model needs. Every runner returns float32 (N, n_objects) log-probabilities.
Export parity, the benchmark and the field-app checks all go through here.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from .contract import Preprocess
from .errors import ArtefactError


class Runner:
    """One loaded model in one runtime."""

    runtime: str = ""
    input_dtype: str = "float32"  # 'uint8' (raw pixels, NHWC) or 'float32' (normalised)

    def __init__(self, path: str | os.PathLike, preprocess: Preprocess, threads: int | None = None):
        self.path = Path(path)
        self.name = self.path.name
        self.preprocess = preprocess
        self.threads = threads

    def logprobs(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) pixels -> float32 (N, n_objects) log-probabilities."""
        pixels = self._check_pixels(pixels)
        return np.asarray(self._run(pixels), dtype=np.float32)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        size = self.preprocess.input_size
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (size, size, 3):
            raise ArtefactError(
                f"{self.path}: expected uint8 pixels (N, {size}, {size}, 3), got {pixels.dtype} {pixels.shape}"
            )
        return pixels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, input={self.input_dtype})"


class TorchRunner(Runner):
    """A model bundle folder, run by PyTorch on the CPU."""

    runtime = "torch"

    def __init__(self, path, preprocess, threads=None):
        super().__init__(path, preprocess, threads)
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        from .bundle import load_bundle

        self.bundle = load_bundle(path)
        self.model = self.bundle.model.eval()

    def _run(self, pixels):
        with self._torch.no_grad():
            return self.model(self._torch.from_numpy(self.preprocess.normalize(pixels))).numpy()


class OnnxRunner(Runner):
    """An .onnx file, run by ONNX Runtime (CPU); float NCHW/NHWC or uint8 NHWC input."""

    runtime = "onnxruntime"

    def __init__(self, path, preprocess, threads=None):
        super().__init__(path, preprocess, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types for bad files
            raise ArtefactError(f"{self.path}: cannot load ONNX model ({_first_line(err)})") from None
        self._input = self.session.get_inputs()[0]
        self.input_dtype = "uint8" if self._input.type == "tensor(uint8)" else "float32"
        self._nhwc = _is_nhwc(self._input.shape)

    def _run(self, pixels):
        x = pixels if self.input_dtype == "uint8" else self.preprocess.normalize(pixels)
        if self._nhwc and self.input_dtype != "uint8":
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        if _fixed_batch(self._input.shape) == 1:
            return np.concatenate([self.session.run(None, {self._input.name: x[i : i + 1]})[0] for i in range(len(x))])
        return self.session.run(None, {self._input.name: x})[0]


class TFLiteRunner(Runner):
    """A .tflite file, run by the LiteRT interpreter (XNNPACK) one image at a time.

    Integer inputs take the pixels re-quantised with the model's own input quantisation; when
    that equals the contract's folded quantisation (`Preprocess.int8_input_quantization`) the
    raw pixels go in unchanged, exactly as the field app feeds them.
    """

    runtime = "tflite"

    def __init__(self, path, preprocess, threads=None):
        super().__init__(path, preprocess, threads)
        from ai_edge_litert.interpreter import Interpreter

        if not self.path.is_file():
            raise ArtefactError(f"{self.path}: no such TFLite model")
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads or 1)
            self.interpreter.allocate_tensors()
        except Exception as err:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError for bad files
            raise ArtefactError(f"{self.path}: cannot load TFLite model ({_first_line(err)})") from None
        self._input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        self._output = outputs[0]
        self._embedding = next((d for d in outputs[1:] if d["name"] == "embedding"), None)
        dtype = np.dtype(self._input["dtype"])
        self.input_dtype = "float32" if dtype.kind == "f" else dtype.name
        self._nhwc = _is_nhwc(self._input["shape"])
        scale, zero_point = self._input["quantization"]
        self._raw_pixels = dtype == np.uint8 and _same_quantization((scale, zero_point), preprocess)

    def _model_input(self, pixels: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._input["dtype"])
        if self._raw_pixels:
            return pixels
        x = self.preprocess.normalize(pixels)  # NCHW float
        if self._nhwc:
            x = np.moveaxis(x, 1, -1)
        if dtype.kind == "f":
            return np.ascontiguousarray(x, dtype=dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    @property
    def has_embedding(self) -> bool:
        return self._embedding is not None

    def _run(self, pixels):
        return self.logprobs_and_embeddings(pixels, embeddings=False)[0]

    def logprobs_and_embeddings(self, pixels: np.ndarray, embeddings: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Log-probabilities and the raw "embedding" output (pooled features) of uint8 NHWC pixels."""
        if embeddings and self._embedding is None:
            raise ArtefactError(f"{self.path}: the model has no embedding output (re-export it with this version)")
        x = self._model_input(self._check_pixels(pixels) if embeddings else pixels)
        out, features = [], []
        for i in range(len(x)):
            self.interpreter.set_tensor(self._input["index"], x[i : i + 1])
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self._output["index"])
            if np.dtype(self._output["dtype"]).kind != "f":
                scale, zero_point = self._output["quantization"]
                y = (y.astype(np.float32) - zero_point) * scale
            out.append(y.reshape(1, -1))
            if embeddings:
                features.append(self.interpreter.get_tensor(self._embedding["index"]).reshape(1, -1).astype(np.float32))
        return np.concatenate(out), (np.concatenate(features) if embeddings else None)


class CoreMLRunner(Runner):
    """A .mlpackage run by Core ML (macOS only: coremltools cannot predict elsewhere).

    The model takes an RGB image (the contract's normalisation is in its ImageType) and
    outputs class probabilities; their log is returned.
    """

    runtime = "coreml"
    input_dtype = "uint8"

    def __init__(self, path, preprocess, threads=None):
        super().__init__(path, preprocess, threads)
        if platform.system() != "Darwin":
            raise ArtefactError(f"{self.path}: Core ML prediction needs macOS (this is {platform.system()})")
        import coremltools as ct

        self.model = ct.models.MLModel(str(self.path), compute_units=ct.ComputeUnit.CPU_ONLY)
        spec = self.model.get_spec()
        self._input_name = spec.description.input[0].name
        self._probs_name = spec.description.predictedProbabilitiesName
        self._labels = _coreml_labels(self.model, self.path)

    def _run(self, pixels):
        from PIL import Image

        out = []
        for image in pixels:
            probs = self.model.predict({self._input_name: Image.fromarray(image)})[self._probs_name]
            out.append(np.log(np.maximum([probs[label] for label in self._labels], 1e-30)))
        return np.stack(out)


COREML_LABELS_KEY = "artefact.labels"  # user-defined metadata: JSON list of labels in output order


def _coreml_labels(model, path: Path) -> list[str]:
    import json

    text = model.user_defined_metadata.get(COREML_LABELS_KEY)
    if not text:
        raise ArtefactError(f"{path}: Core ML model has no {COREML_LABELS_KEY!r} metadata (not exported by artefact-export)")
    return list(json.loads(text))


def open_runner(path: str | os.PathLike, preprocess: Preprocess, threads: int | None = None) -> Runner:
    """Load `path` in the runtime its suffix names: a bundle folder (torch), .onnx, .tflite, .mlpackage."""
    path = Path(path)
    if not path.exists():
        raise ArtefactError(f"{path}: no such model file or bundle")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return TFLiteRunner(path, preprocess, threads)
    if suffix == ".onnx":
        return OnnxRunner(path, preprocess, threads)
    if suffix in (".mlpackage", ".mlmodel"):
        return CoreMLRunner(path, preprocess, threads)
    if path.is_dir():
        return TorchRunner(path, preprocess, threads)
    raise ArtefactError(f"{path}: unknown model type (expected a bundle folder, .onnx, .tflite or .mlpackage)")


def _same_quantization(quantization: tuple[float, int], preprocess: Preprocess) -> bool:
    try:
        scale, zero_point = preprocess.int8_input_quantization()
    except ArtefactError:
        return False
    return bool(np.isclose(quantization[0], scale, rtol=1e-5)) and int(quantization[1]) == zero_point


def _is_nhwc(shape) -> bool:
    return len(shape) == 4 and shape[-1] == 3 and shape[1] != 3


def _fixed_batch(shape) -> int | None:
    return shape[0] if shape and isinstance(shape[0], (int, np.integer)) and shape[0] > 0 else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
