"""What is timed: the model's own invocation on an input prepared beforehand (as TFLite's benchmark_model).

`Runner.logprobs` also normalises and re-lays out the pixels (numpy, several ms per photo on a
busy CPU) which would swamp a 1 ms int8 model. For the runtimes in `artefact.runtimes` the input
is prepared outside the timed region; every such shortcut is checked once against
`Runner.logprobs` on a real photo and, if it does not give the same output (e.g. the runner
changed), the row falls back to timing `Runner.logprobs` end to end and says so.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from artefact.runtimes import OnnxRunner, Runner, TFLiteRunner, TorchRunner

from .models import EnsembleRunner

Thunk = Callable[[], object]
Prepare = Callable[[int], Thunk]


def _torch(runner: TorchRunner, pixels: np.ndarray) -> Prepare:
    import torch

    def prepare(i: int) -> Thunk:
        x = torch.from_numpy(runner.preprocess.normalize(pixels[i % len(pixels)][None]))

        def run():
            with torch.no_grad():
                return runner.model(x).numpy()
        return run
    return prepare


def _tflite(runner: TFLiteRunner, pixels: np.ndarray) -> Prepare:
    interpreter, inp, out = runner.interpreter, runner._input, runner._output
    dequantize = np.dtype(out["dtype"]).kind != "f"

    def prepare(i: int) -> Thunk:
        x = runner._model_input(pixels[i % len(pixels)][None])

        def run():
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])
            if dequantize:
                scale, zero_point = out["quantization"]
                y = (y.astype(np.float32) - zero_point) * scale
            return y
        return run
    return prepare


def _onnx(runner: OnnxRunner, pixels: np.ndarray) -> Prepare:
    session, name = runner.session, runner._input.name

    def prepare(i: int) -> Thunk:
        x = pixels[i % len(pixels)][None]
        if runner.input_dtype != "uint8":
            x = runner.preprocess.normalize(x)
            if runner._nhwc:
                x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        return lambda: session.run(None, {name: x})[0]
    return prepare


def _end_to_end(runner: Runner, pixels: np.ndarray) -> Prepare:
    return lambda i: (lambda: runner.logprobs(pixels[i % len(pixels)][None]))


SHORTCUTS = ((TFLiteRunner, _tflite), (OnnxRunner, _onnx), (TorchRunner, _torch))


def timed_call(runner: Runner, pixels_of: Callable[[Runner], np.ndarray]) -> tuple[Prepare, str]:
    """(prepare(i) -> thunk to time, 'model' | 'end-to-end'); `pixels_of(runner)` gives its query pixels."""
    if isinstance(runner, EnsembleRunner):
        parts = [timed_call(m, pixels_of) for m in runner.members]

        def prepare(i: int) -> Thunk:
            thunks = [p(i) for p, _ in parts]
            return lambda: [t() for t in thunks]
        return prepare, "model" if all(mode == "model" for _, mode in parts) else "end-to-end"
    pixels = pixels_of(runner)
    for kind, make in SHORTCUTS:
        if isinstance(runner, kind):
            try:
                prepare = make(runner, pixels)
                shortcut = np.asarray(prepare(0)(), np.float32).reshape(1, -1)
            except (AttributeError, KeyError, TypeError, ValueError):
                break
            reference = runner.logprobs(pixels[:1])
            if shortcut.shape == reference.shape and np.allclose(shortcut, reference, atol=1e-4):
                return prepare, "model"
            break
    return _end_to_end(runner, pixels), "end-to-end"
