"""facecodec.sender: from video (file or camera) to per-frame values and face tubes.

    video.py      PyAV reading (rotation, variable frame rate, resampling), live frames
    landmarks.py  MediaPipe Face Mesh tracking, the 33 supervised landmarks, smoothing
    smoothing.py  the One-Euro filter
    tube.py       the face tube: a square crop fixed while the head stays in it
    pose.py       yaw, pitch, roll and eye openness from the 3-D landmarks
    sources.py    source-frame selection (offline) and the live source policy
    deadband.py   the dead zone on the learned values (the rate knob)
    frontend.py   FrontEnd: all of the above, one record per frame
    prepare.py    the training cache (``facecodec prepare-data``)

See docs/sender.md. Importing this package does not load MediaPipe; the first frame does.
"""

from facecodec.sender.frontend import FrameRecord, FrontEnd, stack
from facecodec.sender.landmarks import IRIS_CENTRES, SUPERVISED_GROUPS, SUPERVISED_LANDMARKS
from facecodec.sender.sources import SourcePolicy, SourceUpdate, select_sources
from facecodec.sender.tube import Box
from facecodec.sender.video import Frame, VideoReader, live_frames

__all__ = [
    "IRIS_CENTRES", "SUPERVISED_GROUPS", "SUPERVISED_LANDMARKS", "Box", "Frame", "FrameRecord",
    "FrontEnd", "SourcePolicy", "SourceUpdate", "VideoReader", "live_frames", "select_sources",
    "stack",
]
