"""artefact-export: a trained bundle -> ONNX, TFLite (fp32/fp16/int8), Core ML and field-app assets.

Modules, one step each: onnx_export, tflite_export (onnx2tf + int8), metadata (TFLite Metadata),
coreml_export, calibration, parity (report + --check gate), android (asset folder), pipeline, cli.
"""
