"""facecodec: a neural talking-face video codec.

Layout (dependencies point one way, downwards):

- ``facecodec.bitstream``: quantization, delta coding, learned priors, range coding and
  the ``.fcs`` container. Pure numpy + constriction: knows nothing of torch or video.
- ``facecodec.sender``: video input, face tracking, face tube, head pose, source frames.
- ``facecodec.models``: the networks, one per file.
- ``facecodec.training``: losses, data, the training loop.
- ``facecodec.receiver``: rendering decoded values through the generator.
- ``facecodec.export``: CoreML / ONNX export.
- ``facecodec.codec``: :class:`Encoder` and :class:`Decoder`, the API for apps (sender +
  bitstream, bitstream + receiver).
- ``facecodec.cli``: the ``facecodec`` command, a thin layer over the above.
"""

from facecodec.errors import FacecodecError, FormatError, InputError, ModelMismatchError

__version__ = "0.1.0"

__all__ = ["Decoder", "Encoder", "FacecodecError", "FormatError", "InputError",
           "ModelMismatchError", "__version__"]


def __getattr__(name: str):
    # Encoder/Decoder pull in torch and MediaPipe: load them on first use, so that
    # `import facecodec` stays cheap for tools that only read bitstreams
    if name in ("Encoder", "Decoder"):
        from facecodec import codec  # noqa: PLC0415 - lazy: keeps `import facecodec` light

        return getattr(codec, name)
    raise AttributeError(f"module 'facecodec' has no attribute {name!r}")
