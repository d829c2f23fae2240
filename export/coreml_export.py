"""PyTorch bundle -> Core ML (mlprogram): fp16 by default, int8 = linear int8 weight quantisation.

The input is an ImageType whose scale/bias apply the contract's normalisation; the model is a
classifier (ClassifierConfig with the object ids) whose probability output Core ML and Vision
read as confidences. Labels, collections, the contract and hashes go into the user metadata.
Conversion and spec validation run anywhere; prediction needs macOS (see artefact.runtimes).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artefact import __version__
from artefact.bundle import Bundle
from artefact.errors import ArtefactError
from artefact.runtimes import COREML_LABELS_KEY

from .metadata import AUTHOR, LICENSE, model_description
from .onnx_export import export_model

log = logging.getLogger("artefact")
INPUT_NAME = "image"
LABEL_NAME = "object_id"


class _Probabilities(nn.Module):
    """Core ML classifiers output probabilities; `normalize` is set only when ImageType cannot hold it."""

    def __init__(self, model: nn.Module, mean=None, std=None):
        super().__init__()
        self.model = model
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        if self.normalize:
            x = (x - self.mean) / self.std
        return torch.softmax(self.model.head(self.model.features(x)), dim=1)


def convert_coreml(bundle: Bundle, path: str | Path, precision: str = "fp16", progress: bool = True) -> Path:
    """Write `path` (.mlpackage) in `precision` 'fp16' or 'int8' (int8 weights, fp16 compute)."""
    with contextlib.ExitStack() as stack:
        if not progress:  # coremltools draws its own pass-by-pass progress bars on stderr
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return _convert(bundle, Path(path), precision)


def _convert(bundle: Bundle, path: Path, precision: str) -> Path:
    import coremltools as ct

    logging.getLogger("coremltools").setLevel(logging.WARNING)

    if precision not in ("fp16", "int8"):
        raise ArtefactError(f"Core ML precision must be fp16 or int8, not {precision!r}")
    p = bundle.preprocess
    size = p.input_size
    uniform = len(set(p.std)) == 1
    wrapped = _Probabilities(export_model(bundle), None if uniform else list(p.mean), None if uniform else list(p.std)).eval()
    scale = 1.0 / p.std[0] if uniform else 1.0
    bias = [-m / p.std[0] for m in p.mean] if uniform else [0.0, 0.0, 0.0]
    try:
        traced = torch.jit.trace(wrapped, torch.zeros(1, 3, size, size))
        mlmodel = ct.convert(
            traced,
            inputs=[ct.ImageType(name=INPUT_NAME, shape=(1, 3, size, size), scale=scale, bias=bias,
                                 color_layout=ct.colorlayout.RGB)],
            classifier_config=ct.ClassifierConfig(bundle.label_ids, predicted_feature_name=LABEL_NAME),
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16,
            minimum_deployment_target=ct.target.iOS16,
        )
        if precision == "int8":
            import coremltools.optimize.coreml as cto

            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
            with np.errstate(divide="ignore", invalid="ignore"):  # all-zero depthwise channels quantise to 0
                mlmodel = cto.linear_quantize_weights(mlmodel, config=config)
    except ArtefactError:
        raise
    except Exception as err:  # noqa: BLE001 - converter crash: one line for the user
        raise ArtefactError(f"Core ML conversion of {bundle.path} failed: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}") from None
    mlmodel.short_description = model_description(bundle, f"Core ML {precision}").replace("log-probabilities", "probabilities")
    mlmodel.author, mlmodel.license, mlmodel.version = AUTHOR, LICENSE, f"artefact {__version__}; bundle {bundle.name}"
    mlmodel.input_description[INPUT_NAME] = f"RGB photo, centre-cropped and resized to {size}x{size}"
    mlmodel.user_defined_metadata.update({
        COREML_LABELS_KEY: json.dumps(bundle.label_ids),
        "artefact.collections": json.dumps([l.collection for l in bundle.labels]),
        "artefact.label_hash": bundle.label_hash,
        "artefact.preprocess": json.dumps(p.to_dict()),
        "artefact.bundle": bundle.name,
        "artefact.precision": precision,
    })
    tmp = path.with_name(f".{path.stem}.tmp.mlpackage")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        mlmodel.save(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def inspect_coreml(path: str | Path) -> dict:
    """Reload a saved .mlpackage (no prediction) and describe its spec: io, labels, ops, metadata."""
    import coremltools as ct

    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as err:  # noqa: BLE001
        raise ArtefactError(f"{path}: cannot read Core ML model ({err})") from None
    spec = model.get_spec()
    kind = spec.WhichOneof("Type")
    ops: dict[str, int] = {}
    if kind == "mlProgram":
        for function in spec.mlProgram.functions.values():
            for block in function.block_specializations.values():
                for op in block.operations:
                    ops[op.type] = ops.get(op.type, 0) + 1
    image = spec.description.input[0]
    return {
        "type": kind,
        "input": {"name": image.name, "kind": image.type.WhichOneof("Type"),
                  "width": image.type.imageType.width, "height": image.type.imageType.height},
        "outputs": [o.name for o in spec.description.output],
        "predicted_feature": spec.description.predictedFeatureName,
        "probabilities": spec.description.predictedProbabilitiesName,
        "labels": json.loads(model.user_defined_metadata.get(COREML_LABELS_KEY, "[]")),
        "ops": ops,
        "metadata": dict(model.user_defined_metadata),
        "spec_version": spec.specificationVersion,
    }
