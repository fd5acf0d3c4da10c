"""The codec's defaults and ranges that ``facecodec`` shows in its options, one place each.

Plain values, no imports: the command line reads them when it starts, so ``facecodec --help``
loads none of what the modules using them need (PyAV, OpenCV, MediaPipe, torch). The
modules keep their own names for them: ``facecodec.codec.DEFAULT_SOURCES``,
``facecodec.audio.DEFAULT_KBPS``, ``facecodec.imagecodec.CODECS``,
``facecodec.sender.video.DEFAULT_FPS``, ``facecodec.sender.frontend.TUBE_SIZE``,
``facecodec.bitstream.header.INTRA_PERIOD_S``.
"""

FPS = 15.0  # of a stream (a video is resampled to it)
SOURCES = 3  # Oquab et al. 2022 send three source frames (section 3.3)
SOURCE_CODECS = ("webp", "jpeg", "png")  # the still-image codecs of the source frames
SOURCE_CODEC = "webp"
SOURCE_QUALITY = 80
# how a file's sources are chosen: by head pose (section 3.3), or closed loop (the sender
# draws what the receiver will and adds the frames drawn worst: facecodec/sender/coverage.py)
SOURCE_CHOICES = ("pose", "render")
SOURCE_CHOICE = "pose"
TUBE_SIZE = 256  # side of the face tube: the sender's crop, the sources, the decoded video
INTRA_PERIOD_S = 2.0  # between a stream's intra frames: where a late joiner starts
# Priors are fitted on value sequences that carry no frame rate, so their intra spacing is
# a frame count: the codec's period at the default rate, which is the data cache's too.
FIT_INTRA_PERIOD = round(INTRA_PERIOD_S * FPS)
AUDIO_KBPS = 8.0  # speech (issue #17: Opus at 6-12 kbps)
AUDIO_MIN_KBPS, AUDIO_MAX_KBPS = 6.0, 64.0
MIN_SOURCE_KBPS, MAX_SOURCE_KBPS = 0.25, 1000.0  # a paced source's rate (format 2.3)
BUDGET_MIN_KBPS, BUDGET_MAX_KBPS = 3.0, 30.0  # --kbps, all-in (issue #17's range)
