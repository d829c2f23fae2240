"""ONNX -> TFLite: onnx2tf writes the TF SavedModel plus fp32/fp16 .tflite; int8 is quantised here.

int8 ("full integer"): the TFLite converter calibrates the SavedModel on real photos (normalised by
the contract), with uint8 NHWC input and float32 output. The input quantisation is then set to the
contract's folded normalisation (`Preprocess.int8_input_quantization`) so the app feeds raw pixels;
this is exact because the uint8 input only feeds the QUANTIZE op that re-quantises into the first
layer's calibrated int8 range.
"""
from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from artefact.contract import Preprocess
from artefact.errors import ArtefactError

log = logging.getLogger("artefact")
# onnx2tf fetches this sample file at start-up even when it is not used (it is only for -oiqt
# without -cind); a placeholder in its working folder keeps it offline.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def run_onnx2tf(onnx_path: Path, workdir: Path, timeout_s: int = 900) -> dict[str, Path]:
    """Convert with onnx2tf; returns {'saved_model', 'fp32', 'fp16'} paths inside `workdir`."""
    workdir = workdir.resolve()
    out = workdir / "onnx2tf"
    workdir.mkdir(parents=True, exist_ok=True)
    np.save(workdir / ONNX2TF_SAMPLE, np.zeros((1, 8, 8, 3), np.float32))
    bin_dir = Path(sys.executable).parent
    exe = bin_dir / "onnx2tf"
    command = [str(exe) if exe.exists() else "onnx2tf", "-i", str(onnx_path.resolve()), "-o", str(out), "-osd", "-nuo", "-v", "error"]  # -nuo: already simplified
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="-1")
    try:
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ArtefactError(f"onnx2tf did not finish converting {onnx_path} within {timeout_s} s") from None
    stem = onnx_path.stem
    paths = {"saved_model": out, "fp32": out / f"{stem}_float32.tflite", "fp16": out / f"{stem}_float16.tflite"}
    if done.returncode != 0 or not all(p.exists() for p in paths.values()):
        lines = [l for l in (done.stderr + done.stdout).splitlines() if l.strip() and "W0000" not in l]
        raise ArtefactError(f"onnx2tf failed on {onnx_path} (exit {done.returncode}): {lines[-1] if lines else 'no output'}")
    return paths


def quantize_int8(saved_model: Path, pixels: np.ndarray, preprocess: Preprocess, progress: bool = True) -> bytes:
    """Full-integer int8 TFLite (uint8 NHWC raw-pixel input, float32 output) calibrated on `pixels`."""
    import tensorflow as tf

    if len(pixels) == 0:
        raise ArtefactError("int8 calibration set is empty")
    bar = tqdm(total=len(pixels), desc="int8 calibration", unit="img", disable=not progress, leave=False)

    def representative():
        for image in pixels:
            x = np.moveaxis(preprocess.normalize(image[None]), 1, -1)  # NCHW -> NHWC, as onnx2tf lays out
            bar.update(1)
            yield [np.ascontiguousarray(x, np.float32)]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    try:
        model = converter.convert()
    except Exception as err:  # noqa: BLE001 - converter errors are long; keep the first line
        raise ArtefactError(f"int8 conversion of {saved_model} failed: {_first_line(err)}") from None
    finally:
        bar.close()
    return set_input_quantization(model, *preprocess.int8_input_quantization())


def _read(model: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))


def _write(schema, model_t) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def set_input_quantization(model: bytes, scale: float, zero_point: int) -> bytes:
    """Give the uint8 model input the contract's (scale, zero_point); it must feed QUANTIZE ops only."""
    schema, model_t = _read(model)
    graph = model_t.subgraphs[0]
    index = graph.inputs[0]
    tensor = graph.tensors[index]
    if tensor.type != schema.TensorType.UINT8:
        raise ArtefactError(f"int8 model input is {tensor.type}, expected uint8")
    codes = {i: c.builtinCode for i, c in enumerate(model_t.operatorCodes)}
    for op in graph.operators:
        if index in op.inputs and codes[op.opcodeIndex] != schema.BuiltinOperator.QUANTIZE:
            raise ArtefactError("int8 model input feeds a compute op directly; cannot fold the normalisation")
    tensor.quantization.scale = [float(scale)]
    tensor.quantization.zeroPoint = [int(zero_point)]
    return _write(schema, model_t)


def float_classifier_tail(model: bytes, weight: np.ndarray, bias: np.ndarray) -> bytes:
    """Run the last layer and the log-softmax in float32 after one DEQUANTIZE.

    The converter ends an int8 graph with FC(int8) -> LOG_SOFTMAX(int8, fixed 1/16 step) -> DEQUANTIZE:
    log-probabilities on a 0.0625 grid, too coarse to rank close objects. This rewrites the tail to
    DEQUANTIZE(hidden features) -> FC(float32, the bundle's exact weights) -> LOG_SOFTMAX(float32).
    The backbone and the first head layer stay int8; the tail costs (n_objects x hidden) float MACs.
    """
    schema, model_t = _read(model)
    graph = model_t.subgraphs[0]
    code = {i: c.builtinCode for i, c in enumerate(model_t.operatorCodes)}
    producer = {t: op for op in graph.operators for t in op.outputs}
    op = schema.BuiltinOperator
    dequantize = producer.get(graph.outputs[0])
    log_softmax = producer.get(dequantize.inputs[0]) if dequantize else None
    fc = producer.get(log_softmax.inputs[0]) if log_softmax else None
    if not (dequantize and code[dequantize.opcodeIndex] == op.DEQUANTIZE and log_softmax
            and code[log_softmax.opcodeIndex] == op.LOG_SOFTMAX and fc and code[fc.opcodeIndex] == op.FULLY_CONNECTED):
        raise ArtefactError("int8 graph does not end in FULLY_CONNECTED -> LOG_SOFTMAX -> DEQUANTIZE as expected")
    hidden, old_weight = fc.inputs[0], graph.tensors[fc.inputs[1]]
    if tuple(old_weight.shape) != weight.shape:
        raise ArtefactError(f"int8 graph's last layer is {tuple(old_weight.shape)}, bundle's is {weight.shape}")

    def add_tensor(name: str, shape, data: np.ndarray | None = None) -> int:
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type = name.encode(), list(shape), schema.TensorType.FLOAT32
        tensor.buffer = 0
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data, np.float32).tobytes(), np.uint8)
            model_t.buffers.append(buffer)
            tensor.buffer = len(model_t.buffers) - 1
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    hidden_f = add_tensor("hidden_float", graph.tensors[hidden].shape)
    weight_f = add_tensor("classifier_weight_float", weight.shape, weight)
    bias_f = add_tensor("classifier_bias_float", bias.shape, bias)
    logits_f = add_tensor("logits_float", graph.tensors[fc.outputs[0]].shape)
    for index in fc.inputs[1:]:  # the int8 weights and int32 bias are no longer used
        if index >= 0 and sum(index in o.inputs for o in graph.operators) == 1:
            model_t.buffers[graph.tensors[index].buffer].data = None
    dequantize.inputs, dequantize.outputs = [hidden], [hidden_f]
    fc.inputs, fc.outputs = [hidden_f, weight_f, bias_f], [logits_f]
    log_softmax.inputs, log_softmax.outputs = [logits_f], [graph.outputs[0]]
    graph.operators.remove(dequantize)
    graph.operators.insert(graph.operators.index(fc), dequantize)
    return _write(schema, model_t)


EMBEDDING_OUTPUT = "embedding"


def add_embedding_output(model: bytes) -> bytes:
    """Add a second float32 output, "embedding": the pooled backbone features (the gallery's embedding).

    Expects the tail `float_classifier_tail` writes; the features are the int8 input of the first head
    layer (the FULLY_CONNECTED that produces the dequantised hidden features), dequantised once.
    Output 0 stays the log-probabilities.
    """
    schema, model_t = _read(model)
    graph = model_t.subgraphs[0]
    code = {i: c.builtinCode for i, c in enumerate(model_t.operatorCodes)}
    producer = {t: op for op in graph.operators for t in op.outputs}
    op = schema.BuiltinOperator
    dequantize = next((o for o in graph.operators if code[o.opcodeIndex] == op.DEQUANTIZE and o.outputs[0] not in graph.outputs), None)
    first_fc = producer.get(dequantize.inputs[0]) if dequantize else None
    while first_fc is not None and code[first_fc.opcodeIndex] in (op.RELU, op.RESHAPE):
        first_fc = producer.get(first_fc.inputs[0])
    if first_fc is None or code[first_fc.opcodeIndex] != op.FULLY_CONNECTED:
        raise ArtefactError("int8 graph: cannot find the head's first layer to take the embedding from")
    features = first_fc.inputs[0]
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = EMBEDDING_OUTPUT.encode(), list(graph.tensors[features].shape), schema.TensorType.FLOAT32, 0
    graph.tensors.append(tensor)
    embedding = len(graph.tensors) - 1
    new_op = schema.OperatorT()
    new_op.opcodeIndex, new_op.inputs, new_op.outputs = dequantize.opcodeIndex, [features], [embedding]
    graph.operators.append(new_op)
    graph.outputs = list(graph.outputs) + [embedding]
    for signature in model_t.signatureDefs or []:
        output = schema.TensorMapT()
        output.name, output.tensorIndex = EMBEDDING_OUTPUT.encode(), embedding
        signature.outputs = list(signature.outputs or []) + [output]
    return _write(schema, model_t)


def tflite_ops(path: str | Path) -> dict[str, int]:
    """Operator histogram of a .tflite file (in execution order of first appearance)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return dict(collections.Counter(d["op_name"] for d in interpreter._get_ops_details()))


def tflite_io(path: str | Path) -> dict:
    """dtype, shape and quantisation of the input and output tensors."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))

    def describe(d):
        scale, zero_point = d["quantization"]
        return {"dtype": np.dtype(d["dtype"]).name, "shape": [int(v) for v in d["shape"]],
                "scale": float(scale), "zero_point": int(zero_point)}

    outputs = interpreter.get_output_details()
    io = {"input": describe(interpreter.get_input_details()[0]), "output": describe(outputs[0])}
    if len(outputs) > 1:
        io["embedding"] = {"index": 1, **describe(outputs[1])}
    return io


def int8_islands(path: str | Path) -> list[str]:
    """Problems in an int8 graph: layout shuffles or float islands (an empty list is a clean graph).

    Allowed: one QUANTIZE at the input, one DEQUANTIZE into the float tail and DEQUANTIZE ops that
    only produce a model output (the embedding); forbidden: any TRANSPOSE, a second DEQUANTIZE into
    compute ops, or a QUANTIZE after the DEQUANTIZE (back into int8).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    outputs = {d["index"] for d in interpreter.get_output_details()}
    ops = [d["op_name"] for d in interpreter._get_ops_details()
           if not (d["op_name"] == "DEQUANTIZE" and set(d["outputs"]) <= outputs)]
    problems = [f"{ops.count('TRANSPOSE')} TRANSPOSE"] if "TRANSPOSE" in ops else []
    if ops.count("DEQUANTIZE") > 1:
        problems.append(f"{ops.count('DEQUANTIZE')} DEQUANTIZE")
    if ops.count("QUANTIZE") > 1:
        problems.append(f"{ops.count('QUANTIZE')} QUANTIZE")
    if "DEQUANTIZE" in ops and "QUANTIZE" in ops[ops.index("DEQUANTIZE"):]:
        problems.append("QUANTIZE after DEQUANTIZE (float island)")
    return problems


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
