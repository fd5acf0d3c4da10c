"""Per-clip metrics of a method's output against the original face tube.

Picture: LPIPS-alex (Zhang et al. 2018, v0.1; the project's implementation in
facecodec/training/lpips.py, the papers' main metric), PSNR, MS-SSIM (Wang, Simoncelli and
Bovik 2003, through ``pytorch-msssim``). Identity: the dlib face descriptor distance of
eval/identity.py (an optional extra). Motion: landmark NME (MediaPipe Face Mesh on the
output against MediaPipe on the original, over the outer-eye-corner distance) and two
temporal-consistency figures: the motion ratio (frame-to-frame change of the output over
that of the original) and flicker (the change the output adds beyond the original's).
Expression (eval/expression.py, on the same two meshes): eye openness, mouth openness and
mouth width, their errors and correlations with the original's, and blink recall.
Rates: bits per frame, steady-state and all-in kbps.

LPIPS alone rewards a frozen picture on talking heads (docs/environment.md): report NME
beside it, always. NME in turn hardly moves when only the eyes or the mouth are wrong (the
lids are a few of 468 points): a face that keeps its eyes open through a blink scores a
good NME and a blink recall of 0, so the expression figures go beside NME.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

from facecodec.eval.base import Encoded, EvalClip
from facecodec.eval.expression import compare_expressions
from facecodec.eval.identity import FaceIdentity, Reference
from facecodec.sender.landmarks import FaceTracker
from facecodec.training.lpips import LPIPSAlex

# Outer eye corners in MediaPipe's mesh (subject's right, left): the NME normaliser, the
# "inter-ocular distance" of face-alignment benchmarks (300-W uses outer corners too).
OUTER_EYE_CORNERS = (33, 263)
N_MESH = 468  # the face mesh without the 10 iris points (as the anchor numbers)


# --- picture ------------------------------------------------------------------------------

def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 (or float) arrays, in 8-bit levels squared."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of 8-bit images (peak 255) over all pixels and channels; +inf if equal.

    Given a whole clip (T, H, W, 3) it is the clip's PSNR from its mean squared error, not
    the mean of per-frame PSNRs (which is +inf as soon as one frame is exact, e.g. the
    first frame of a held clip)."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def _to_tensor(frames: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def ms_ssim(a: np.ndarray, b: np.ndarray, batch: int = 16) -> np.ndarray:
    """(T,) MS-SSIM of (T, H, W, 3) uint8 frames: Wang et al. 2003 as ``pytorch_msssim``
    implements it (11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03), the paper's five
    scale weights), on RGB in [0, 1], averaged over the three channels. Needs H, W > 160."""
    out = []
    with torch.no_grad():
        for i in range(0, len(a), batch):
            x, y = _to_tensor(a[i:i + batch]), _to_tensor(b[i:i + batch])
            out.append(_ms_ssim(x, y, data_range=1.0, size_average=False).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


class LPIPS:
    """LPIPS-alex distances of frame pairs, with the network loaded once."""

    def __init__(self) -> None:
        self.net = LPIPSAlex.pretrained()

    def __call__(self, a: np.ndarray, b: np.ndarray, batch: int = 16) -> np.ndarray:
        """(T,) distances of (T, H, W, 3) uint8 frames; exactly 0 for identical frames."""
        out = []
        with torch.no_grad():
            for i in range(0, len(a), batch):
                d = self.net(_to_tensor(a[i:i + batch]), _to_tensor(b[i:i + batch]))
                out.append(d.double().numpy())
        return np.concatenate(out) if out else np.zeros(0)


# --- motion -------------------------------------------------------------------------------

def track_landmarks(frames: np.ndarray) -> np.ndarray:
    """(T, 468, 2) MediaPipe mesh points (x, y in pixels of the frames) of one sequence,
    NaN where no face is found. The sender's tracker (facecodec/sender/landmarks.py) in
    tracking mode, a fresh one per sequence, raw (no smoothing: the metric must see what
    is in the pictures)."""
    out = np.full((len(frames), N_MESH, 2), np.nan)
    with FaceTracker(max_num_faces=1) as tracker:
        for t, image in enumerate(frames):
            faces = tracker(np.ascontiguousarray(image))
            if faces:
                out[t] = faces[0][:N_MESH, :2]
    return out


def nme(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(T,) normalised mean error: mean over points of the 2-D distance between ``pred`` and
    ``ref`` (T, N, 2), divided by the reference's outer-eye-corner distance. NaN where
    either set is missing."""
    err = np.linalg.norm(pred - ref, axis=-1).mean(axis=-1)
    a, b = OUTER_EYE_CORNERS
    iod = np.linalg.norm(ref[:, a] - ref[:, b], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return err / iod


def hold_missing(points: np.ndarray) -> np.ndarray:
    """Fill frames without a face (NaN) with the last face found (the first one found for
    frames before it), as a receiver would keep showing the last picture. An output in
    which the face was lost is then scored on what it shows, not dropped."""
    found = ~np.isnan(points).any(axis=(1, 2))
    if not found.any():
        return points
    idx = np.where(found, np.arange(len(points)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(found))
    return points[idx]


def frame_change(frames: np.ndarray) -> np.ndarray:
    """(T-1,) mean absolute difference between consecutive frames, in 8-bit levels."""
    if len(frames) < 2:
        return np.zeros(0)
    f = frames.astype(np.int16)
    return np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))


# --- temporal consistency -----------------------------------------------------------------

def motion_ratio(out: np.ndarray, orig: np.ndarray) -> float:
    """Mean frame-to-frame change of ``out`` over that of ``orig`` (frame_change): 1 for
    the original itself, 0 for a frozen picture, above 1 when the output changes more
    than the original (flicker, noise). NaN when the original does not change at all.

    A blurry output changes less everywhere (classic codecs at a few kbps score 0.4-0.8),
    which can hide occasional jumps in this mean: read :func:`flicker` beside it."""
    change_orig = frame_change(orig)
    if len(change_orig) == 0 or change_orig.mean() <= 0:
        return math.nan
    return float(frame_change(out).mean() / change_orig.mean())


def flicker(out: np.ndarray, orig: np.ndarray) -> float:
    """Change of ``out`` beyond the original's, frame by frame, relative to the original's
    mean change: mean_t max(0, change_out[t] - change_orig[t]) / mean_t change_orig[t].

    0 for the original, for a frozen picture and for a blur of the original (averaging
    pixels never increases a mean absolute difference; up to rounding), > 0 for jumps and
    flicker: the failure of FOM-mult when it switches source frames (Oquab et al. 2022,
    figure 9 and Table 5). 1 means the output adds as much change as the original has.
    NaN when the original does not change at all."""
    change_orig = frame_change(orig)
    if len(change_orig) == 0 or change_orig.mean() <= 0:
        return math.nan
    excess = np.maximum(frame_change(out) - change_orig, 0.0)
    return float(excess.mean() / change_orig.mean())


# --- one clip -----------------------------------------------------------------------------

@dataclass
class ClipScore:
    """One method on one clip at one operating point. Rates in kbps are 1000 bit/s."""

    clip: str
    method: str
    target_kbps: float | None
    setting: dict
    reached: bool
    frames: int
    seconds: float
    bits_total: int  # setup + every frame
    bits_first: int  # frame 0 (intra frame, headers) + setup
    bits_per_frame: float  # steady state: mean of frames 1..T-1
    kbps_steady: float
    kbps_all: float  # bits_total over the clip's duration
    lpips: float
    psnr: float  # from the clip's mean squared error
    ms_ssim: float
    nme: float  # NaN if no reference face at all
    identity: float  # dlib descriptor L2 to the original (< 0.6: same person); NaN: not run
    face_found: float  # fraction of output frames where MediaPipe finds a face
    motion_ratio: float  # mean frame change of output / of original (0 = frozen)
    motion_error: float  # mean |change of output - change of original|, 8-bit levels
    flicker: float  # change beyond the original's, over the original's (0 = none)
    # expression (eval/expression.py); signals in outer-eye-corner distances, NaN if no face
    eye_error: float  # mean |eye openness of output - of original|
    mouth_open_error: float
    mouth_width_error: float
    eye_corr: float  # Pearson r with the original's series (NaN: exactly constant)
    mouth_open_corr: float
    mouth_width_corr: float
    blink_frames: int  # frames with the original's eyes closed
    blink_hits: int  # of those, frames with the output's eyes closed too
    false_blinks: int  # frames with the output's eyes closed and the original's open
    encode_fps: float | None
    decode_fps: float | None

    @property
    def blink_recall(self) -> float:
        """Share of the original's closed-eye frames closed in the output (NaN: no blink).
        Averages over clips pool the counts instead (report.py)."""
        return self.blink_hits / self.blink_frames if self.blink_frames else math.nan

    def as_dict(self) -> dict:
        """The fields, and blink_recall for readers of the JSON (ignored when read back)."""
        return {**asdict(self), "blink_recall": self.blink_recall}


def score(clip: EvalClip, enc: Encoded, method: str, target: float | None, lpips: LPIPS,
          ref_landmarks: np.ndarray, identity: FaceIdentity | None = None,
          ref_identity: Reference | None = None) -> ClipScore:
    """All metrics of ``enc`` against ``clip``; ``ref_landmarks`` = track_landmarks(clip),
    ``ref_identity`` = identity.reference(clip.frames) (identity NaN without them)."""
    orig, out = clip.frames, enc.frames
    t = len(orig)
    bits = np.asarray(enc.frame_bits, dtype=np.int64)
    total = int(bits.sum()) + int(enc.setup_bits)
    steady = float(bits[1:].mean()) if t > 1 else 0.0

    out_lm = track_landmarks(out)
    found = ~np.isnan(out_lm).any(axis=(1, 2))
    shown = hold_missing(out_lm)  # what the receiver shows while the face is lost
    per_frame = nme(shown, ref_landmarks)
    ok = ~np.isnan(per_frame)
    change_out, change_orig = frame_change(out), frame_change(orig)

    def fps(seconds: float | None) -> float | None:
        return t / seconds if seconds else None

    return ClipScore(
        clip=clip.name, method=method, target_kbps=target, setting=dict(enc.setting),
        reached=enc.reached, frames=t, seconds=clip.seconds, bits_total=total,
        bits_first=int(bits[0]) + int(enc.setup_bits), bits_per_frame=steady,
        kbps_steady=steady * clip.fps / 1000.0, kbps_all=total / clip.seconds / 1000.0,
        lpips=float(lpips(out, orig).mean()), psnr=psnr(out, orig),
        ms_ssim=float(ms_ssim(out, orig).mean()),
        nme=float(per_frame[ok].mean()) if ok.any() else math.nan,
        identity=(identity.distance(out, ref_identity)
                  if identity is not None and ref_identity is not None else math.nan),
        face_found=float(found.mean()), motion_ratio=motion_ratio(out, orig),
        motion_error=float(np.abs(change_out - change_orig).mean()) if t > 1 else 0.0,
        flicker=flicker(out, orig), **asdict(compare_expressions(shown, ref_landmarks)),
        encode_fps=fps(enc.encode_seconds), decode_fps=fps(enc.decode_seconds))
