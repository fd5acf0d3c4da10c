"""facecodec.export: the networks for on-device inference (docs/export.md).

    wrappers.py   the split (sender / source / generator) as traceable flat-tensor modules
    to_coreml.py  Core ML ML Program packages for iOS (FP16 except the sampling paths)
    to_onnx.py    ONNX files and an onnxruntime session to check them
    macs.py       multiply-accumulates per network call
    bundle.py     a model package -> a directory of exported networks + manifest.json

Depends on facecodec.models, never the reverse. coremltools, onnx, onnxruntime and
onnxscript (the ``export`` extra) are imported only when a format needs them.
"""
