"""Nothing in a stream is trusted (issue #16): a stream's model id is a name looked up
among the installed models, never a path; source images are checked (format, declared
size, a size cap) before they are decoded; the number of sources is bounded."""

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bitstream_helpers import random_walk
from codec_helpers import save_package
from stream_fuzzing import jpeg_claiming, png_claiming, webp_claiming
from training_helpers import tiny_config

from facecodec.bitstream.container import FcsWriter, Header
from facecodec.bitstream.limits import MAX_SOURCE_SIDE, MAX_SOURCES
from facecodec.bitstream.prior import Prior
from facecodec.codec import Decoder, Encoder
from facecodec.errors import FormatError, InputError, ModelMismatchError
from facecodec.imagecodec import check_image, decode_image, encode_image, image_info
from facecodec.models.package import find_installed_model, find_model, valid_model_id

ROOT = Path(__file__).resolve().parents[1]
PRIOR = Prior.load(ROOT / "models" / "frontalizer_sup_unsup_expr" / "prior.json")


def stream(model_id: str = "", model_hash: bytes = b"\0" * 16, n_sources: int = 1,
           image: bytes | None = None, size: tuple[int, int] = (64, 64),
           codec: str = "webp") -> bytes:
    """A valid stream (shipped prior): one source frame, two frames."""
    values = random_walk(PRIOR.table, 3, seed=0)
    out = io.BytesIO()
    w = FcsWriter(out, Header(PRIOR.table, PRIOR.id, n_sources=n_sources, model_id=model_id,
                              model_hash=model_hash), PRIOR)
    if image is None:
        rng = np.random.default_rng(0)
        image = encode_image(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), codec)
    w.add_source(0, codec, size[0], size[1], image, values[0])
    for v in values[1:]:
        w.add_frame(v)
    w.close()
    return out.getvalue()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# -- 1. the model id is a name -------------------------------------------------------------
@pytest.mark.parametrize("model_id", ["../x", "ABS", "models/../..", "x/../../x", ".hidden",
                                      "a" * 65, "fom\n", ""])
def test_a_stream_cannot_name_a_model_directory(model_id, tmp_path, monkeypatch):
    """A decoy model at the place the id points to, whose config even carries that id as
    its name (so the old lookup, which took the id as a path, loaded and rendered it): the
    decoder refuses the id before touching the file system, on one line."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if model_id == "ABS":
        model_id = str(tmp_path / "abs")
    cfg = replace(tiny_config("model.num_unsup=10", "model.expr_dim=16"), name=model_id)
    decoy = (work / model_id).resolve() if model_id else tmp_path / "decoy"
    if tmp_path in decoy.parents:
        save_package(cfg, decoy)
        digest = find_model(decoy).weights_hash()
    else:
        digest = b"\0" * 16
    data = stream(model_id, digest)
    before = files_under(tmp_path)
    with pytest.raises(ModelMismatchError) as e:
        next(Decoder(backend="torch").frames(data))
    assert "\n" not in str(e.value) and "not a model name" in str(e.value)
    assert files_under(tmp_path) == before  # no graph, no cache, nothing anywhere


def test_model_names_and_the_installed_lookup(tmp_path, monkeypatch):
    assert valid_model_id("frontalizer_sup_unsup_expr") and valid_model_id("fom-v1.2")
    for bad in ("../x", "/etc", "a/b", "a..b", "A", "-x", "x\\y", "x" * 65, "", " x"):
        assert not valid_model_id(bad), bad
    # a path is fine as the user's own argument, never as a stream's id
    save_package(replace(tiny_config("model.num_unsup=10", "model.expr_dim=16"), name="mine"),
                 tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    assert find_model("mine").name == "mine"  # relative to the working directory
    with pytest.raises(ModelMismatchError, match="not installed"):
        find_installed_model("mine")
    monkeypatch.setenv("FACECODEC_MODELS", str(tmp_path))
    assert find_installed_model("mine").path == tmp_path / "mine"


# -- 2. source images ----------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["webp", "jpeg", "png"])
def test_image_header_sizes_match_what_decodes(codec):
    from PIL import Image  # a second reader of the headers (Pillow comes with matplotlib)

    rng = np.random.default_rng(1)
    for w, h in ((64, 48), (17, 256), (1, 1)):
        data = encode_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), codec)
        assert image_info(data) == (codec, w, h) and Image.open(io.BytesIO(data)).size == (w, h)
        assert decode_image(data, codec=codec, width=w, height=h).shape == (h, w, 3)


@pytest.mark.parametrize("data", [
    png_claiming(16383, 16383), jpeg_claiming(16383, 16383), webp_claiming(16383, 16383, "lossy"),
    webp_claiming(16384, 16384, "lossless"), webp_claiming(1 << 24, 1 << 24, "extended"),
    png_claiming(2 ** 31, 1)], ids=["png", "jpeg", "webp", "webp-lossless", "webp-x", "png-2^31"])
def test_claimed_huge_sizes_are_refused_before_decoding(data):
    codec, w, h = image_info(data)
    assert w > MAX_SOURCE_SIDE
    with pytest.raises(FormatError, match=f"sides must be in 1..{MAX_SOURCE_SIDE}"):
        decode_image(data)
    with pytest.raises(FormatError, match="its chunk says 64x64"):
        decode_image(data, codec=codec, width=64, height=64)


def test_a_real_oversized_image_is_refused():
    flat = np.full((2048, 2048, 3), 90, np.uint8)  # compresses to a few KB
    for codec in ("png", "webp"):
        data = encode_image(flat, codec)
        assert len(data) < 64 << 10
        with pytest.raises(FormatError, match="2048x2048, sides must be"):
            check_image(data, codec, 2048, 2048)
    ok = encode_image(flat[:MAX_SOURCE_SIDE, :MAX_SOURCE_SIDE], "png")
    assert decode_image(ok, codec="png", width=MAX_SOURCE_SIDE,
                        height=MAX_SOURCE_SIDE).shape[0] == MAX_SOURCE_SIDE


def test_declared_codec_size_and_format_must_be_true():
    webp = encode_image(np.zeros((32, 32, 3), np.uint8), "webp")
    with pytest.raises(FormatError, match="is a webp, its chunk says png"):
        decode_image(webp, codec="png", width=32, height=32)
    with pytest.raises(FormatError, match="is 32x32, its chunk says 32x33"):
        decode_image(webp, codec="webp", width=32, height=33)
    for junk, why in ((b"II*\0" + bytes(64), "not a JPEG, WebP or PNG"),  # a TIFF
                      (b"", "not a JPEG"), (webp[:20], "truncated"),
                      (png_claiming(8, 8)[:20], "truncated"),
                      (b"\xff\xd8" + b"\xff\xd0" * 300, "no frame header in its first"),
                      (b"\xff\xd8\xff\xda\0\2", "no frame header before"),
                      (webp_claiming(8, 8, "lossy")[:20] + b"\0" * 20, "start code")):
        with pytest.raises(FormatError, match=why):
            decode_image(junk)
    with pytest.raises(FormatError, match="does not decode"):
        decode_image(png_claiming(8, 8))  # a valid header, a broken image


# -- 3. the number of sources --------------------------------------------------------------
def test_source_count_is_bounded():
    with pytest.raises(InputError, match=f"n_sources must be .*1..{MAX_SOURCES}, got"):
        Encoder(n_sources=MAX_SOURCES + 1)
    with pytest.raises(ValueError):  # the writer cannot make such a header
        Header(PRIOR.table, PRIOR.id, n_sources=MAX_SOURCES + 1)
    header = Header(PRIOR.table, PRIOR.id, n_sources=1, model_id="frontalizer_sup_unsup_expr")
    object.__setattr__(header, "n_sources", 255)  # a hostile sender's header
    data = header.to_bytes() + stream("frontalizer_sup_unsup_expr")[len(header.to_bytes()):]
    with pytest.raises(FormatError, match="255") as e:  # the reader's or the decoder's check
        next(Decoder(backend="torch").frames(data))
    assert "\n" not in str(e.value)
