"""TFLite Metadata (the schema the Task Library and Android tooling read): write and read back.

Uses the metadata writers of tflite-support 0.4.4, imported module by module: the `tflite_support`
package itself needs protobuf < 4, which the onnx2tf stack does not allow, but these modules do not.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from artefact import __version__
from artefact.bundle import Bundle
from artefact.errors import ArtefactError

LABELS_FILE = "labels.txt"  # one object id per line, in output order (TENSOR_AXIS_LABELS)
LABELS_TABLE = "labels.tsv"  # index, object_id, collection (tab separated, with a header)
AUTHOR = "artefact-export"
LICENSE = "Apache-2.0"


def labels_text(bundle: Bundle) -> str:
    return "".join(f"{label.object_id}\n" for label in bundle.labels)


def labels_table(bundle: Bundle) -> str:
    rows = ["index\tobject_id\tcollection"] + [f"{i}\t{l.object_id}\t{l.collection}" for i, l in enumerate(bundle.labels)]
    return "\n".join(rows) + "\n"


def model_description(bundle: Bundle, precision: str) -> str:
    p = bundle.preprocess
    return (
        f"Recognises {len(bundle.labels)} catalogued objects ({bundle.meta['architecture']['backbone']}, {precision}). "
        f"Input: RGB photo, centre square crop {p.crop_fraction:g} of the short side, bilinear resize to "
        f"{p.input_size}x{p.input_size}, (pixel - {list(p.mean)}) / {list(p.std)}. "
        f"Output: log-probabilities over the labels (exp() gives probabilities). "
        f"Label hash {bundle.label_hash}; source bundle {bundle.name}."
    )


def embed_metadata(model: bytes, bundle: Bundle, precision: str) -> bytes:
    """Return `model` with TFLite Metadata and the label files packed in."""
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as md_fb
    from tensorflow_lite_support.metadata import schema_py_generated as tfl_fb
    from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info, metadata_writer, writer_utils

    p = bundle.preprocess
    input_type = writer_utils.get_input_tensor_types(bytearray(model))[0]
    general = metadata_info.GeneralMd(
        name=f"artefact {bundle.name} ({precision})", version=f"artefact {__version__}; bundle {bundle.name}",
        description=model_description(bundle, precision), author=AUTHOR, licenses=LICENSE,
    ).create_metadata()
    image = metadata_info.InputImageTensorMd(
        name="image",
        description=("uint8 RGB pixels, NHWC; normalisation folded into the input quantisation"
                     if input_type == tfl_fb.TensorType.UINT8 else "float32 RGB, NHWC, (pixel - mean) / std"),
        norm_mean=list(p.mean), norm_std=list(p.std), color_space_type=md_fb.ColorSpaceType.RGB, tensor_type=input_type,
    ).create_metadata()
    with tempfile.TemporaryDirectory() as tmp:
        labels, table = Path(tmp) / LABELS_FILE, Path(tmp) / LABELS_TABLE
        labels.write_text(labels_text(bundle), encoding="utf-8")
        table.write_text(labels_table(bundle), encoding="utf-8")
        output = metadata_info.ClassificationTensorMd(
            name="logprobs", description="log-probabilities over the catalogued objects (exp() gives probabilities)",
            label_files=[metadata_info.LabelFileMd(str(labels))], tensor_type=tfl_fb.TensorType.FLOAT32,
        ).create_metadata()
        output.stats.min, output.stats.max = None, [0.0]  # log-probabilities are <= 0, not in [0, 1]
        table_md = metadata_info.AssociatedFileMd(str(table), "index, object_id, collection of every output (TSV)").create_metadata()
        output.associatedFiles.append(table_md)
        outputs = [output]
        if len(writer_utils.get_output_tensor_types(bytearray(model))) > 1:
            outputs.append(metadata_info.TensorMd(
                name="embedding", description="pooled backbone features: L2-normalise, then cosine similarity to the gallery",
            ).create_metadata())
        try:
            writer = metadata_writer.MetadataWriter.create_from_metadata(
                bytearray(model), general, [image], outputs, [str(labels), str(table)])
            return bytes(writer.populate())
        except (ValueError, RuntimeError) as err:
            raise ArtefactError(f"cannot embed TFLite metadata: {err}") from None


def read_metadata(path: str | Path) -> dict:
    """The embedded metadata as JSON plus the packed files' text: {'metadata', 'files'}."""
    from tensorflow_lite_support.metadata.python.metadata import MetadataDisplayer

    try:
        displayer = MetadataDisplayer.with_model_file(str(path))
    except ValueError as err:
        raise ArtefactError(f"{path}: no TFLite metadata ({err})") from None
    files = {name: displayer.get_associated_file_buffer(name).decode("utf-8")
             for name in displayer.get_packed_associated_file_list()}
    return {"metadata": json.loads(displayer.get_metadata_json()), "files": files}
