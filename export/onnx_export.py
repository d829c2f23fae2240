"""PyTorch bundle -> ONNX (opset 17, static shape, simplified by onnxsim)."""
from __future__ import annotations

import collections
import copy
from pathlib import Path

import torch
from torch import nn

from artefact import atomic
from artefact.bundle import Bundle
from artefact.errors import ArtefactError

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logprobs"
# Ops that betray un-folded 'same'-padding arithmetic (timm's dynamic Conv2dSame) or a dynamic graph.
DYNAMIC_OPS = {"Shape", "Ceil", "Pad", "ConstantOfShape", "Gather", "Cast", "Slice", "Concat"}


def export_model(bundle: Bundle) -> nn.Module:
    """A copy of the bundle's model ready for export: eval mode, head BatchNorm folded into the next Linear."""
    model = copy.deepcopy(bundle.model).cpu().eval()
    bn, linear = model.head[0], model.head[1]
    if isinstance(bn, nn.BatchNorm1d) and isinstance(linear, nn.Linear):
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            linear.bias += linear.weight @ shift
            linear.weight *= scale[None, :]
        model.head[0] = nn.Identity()
    return model


def export_onnx(bundle: Bundle, path: str | Path) -> Path:
    """Write the bundle's model as a simplified, static-shape ONNX file (NCHW float32 normalised input)."""
    import onnx
    from onnxsim import simplify

    size = bundle.preprocess.input_size
    model = export_model(bundle)
    with atomic.atomic_path(path) as tmp:
        try:
            torch.onnx.export(model, torch.zeros(1, 3, size, size), str(tmp), opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=False)
            simplified, ok = simplify(onnx.load(str(tmp)))
        except Exception as err:  # noqa: BLE001 - exporter/simplifier crash: one line for the user
            raise ArtefactError(f"ONNX export of {bundle.path} failed: {type(err).__name__}: {_first_line(err)}") from None
        if not ok:
            raise ArtefactError(f"ONNX export of {bundle.path}: onnxsim could not validate the simplified model")
        simplified.producer_name = "artefact-export"
        for key, value in {"bundle": bundle.name, "label_hash": bundle.label_hash, "output": "log_probabilities"}.items():
            simplified.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(simplified)
        onnx.save(simplified, str(tmp))
    left = DYNAMIC_OPS & set(onnx_ops(path))
    if left:
        raise ArtefactError(f"{path}: simplified ONNX still has dynamic ops {sorted(left)}")
    return Path(path)


def onnx_ops(path: str | Path) -> dict[str, int]:
    """Operator histogram of an ONNX file."""
    import onnx

    return dict(collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
