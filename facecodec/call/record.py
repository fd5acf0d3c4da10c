"""The receiver's recording: what it showed, frame slot by frame slot (a concealed or a
late frame records the picture left on screen), with the sound put back at its samples.

The picture is written as the call goes (H.264, one frame per stream frame at its slot's
time); the sound is added at the end (its packets placed by their sample positions, a
lost one silent), so the file is in sync whatever the call's delays were.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facecodec.audio import RATE, sound_decoder


class Recorder:
    def __init__(self, path: Path, fps: float, info: dict):
        """``fps`` and ``info``: the stream header's (its rate, which sound)."""
        self.path = Path(path)
        self.info = info
        self.fps = Fraction(fps).limit_denominator(1001)
        self.part = self.path.with_name(self.path.name + ".video" + self.path.suffix)
        self._out = av.open(str(self.part), "w")
        self._stream = None
        self._last = -1
        self.frames = 0

    def frame(self, index: int, image: np.ndarray) -> None:
        if index <= self._last:
            return
        if self._stream is None:
            self._stream = self._out.add_stream("libx264", rate=self.fps)
            self._stream.height, self._stream.width = image.shape[:2]
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "20", "preset": "ultrafast"}
            self._stream.time_base = 1 / self.fps
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), "rgb24")
        vf.pts = index
        vf.time_base = 1 / self.fps
        self._out.mux(self._stream.encode(vf))
        self._last = index
        self.frames += 1

    def close(self, audio_packets) -> None:
        try:
            if self._stream is not None:
                self._out.mux(self._stream.encode(None))
        finally:
            self._out.close()
        if self._stream is None:
            self.part.unlink(missing_ok=True)
            return
        packets = sorted({p.start: p for p in audio_packets}.values(), key=lambda p: p.start)
        if not packets:
            os.replace(self.part, self.path)
            return
        dec = sound_decoder(self.info)
        pcm = np.concatenate([dec.decode(p) for p in packets])
        total = round((self._last + 1) * RATE / self.fps)
        pcm = np.concatenate([pcm, np.zeros(max(0, total - len(pcm)), np.int16)])[:total]
        with av.open(str(self.part)) as src, av.open(str(self.path), "w") as out:
            vin = src.streams.video[0]
            vout = out.add_stream_from_template(vin)
            aout = out.add_stream("aac", rate=RATE, layout="mono")
            for pk in src.demux(vin):
                if pk.dts is None:
                    continue
                pk.stream = vout
                out.mux(pk)
            step = 1024 * 8
            for i in range(0, len(pcm), step):
                af = av.AudioFrame.from_ndarray(pcm[None, i:i + step], format="s16",
                                                layout="mono")
                af.sample_rate, af.pts = RATE, i
                out.mux(aout.encode(af))
            out.mux(aout.encode(None))
        self.part.unlink(missing_ok=True)
