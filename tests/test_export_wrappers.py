"""The exported split in PyTorch (no exporter needed): the flat-tensor wrappers compute
exactly what the receiver API computes, for both receiver families, and the MAC counter
agrees with the module-hook counter of facecodec.models.profile."""

from __future__ import annotations

import torch
from training_helpers import tiny_config

from facecodec.export.macs import count
from facecodec.export.wrappers import export_networks
from facecodec.models.profile import count_macs
from facecodec.models.registry import build_model


def _chain(nets: dict, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """sender -> source -> generator through the wrappers, values by name."""
    with torch.no_grad():
        out = {}
        for name in ("source", "generator"):
            net = nets[name]
            res = net.module(*(out.get(s.name, inputs.get(s.name)) for s in net.inputs))
            res = res if isinstance(res, tuple) else (res,)
            out.update({s.name: t for s, t in zip(net.outputs, res, strict=True)})
    return out["image"]


def test_wrappers_equal_the_receiver_api() -> None:
    for family, n in (("frontalizer", 3), ("fom", 1)):
        model = build_model(tiny_config(f"family={family}")).eval()
        nets = {net.name: net for net in export_networks(model, n)}
        assert list(nets) == ["sender", "source", "generator"]
        gen = torch.Generator().manual_seed(0)
        src = torch.rand(1, n, 3, 64, 64, generator=gen)
        drv = torch.rand(1, 3, 64, 64, generator=gen)
        with torch.no_grad():
            sent_src = model.sender(src[0])
            sent_drv = nets["sender"].module(drv)
        sv = {k: v[None] for k, v in sent_src.items()}
        dv = dict(zip(("unsup", "jac", "expr"), sent_drv, strict=False))
        dv = {k: v for k, v in dv.items() if k in model.layout.streams}
        if model.layout.sup:  # the tiny config's FOM keeps the landmarks too
            sv["sup"] = (torch.rand(1, n, 33, 2, generator=gen) - 0.5) * 1.2
            sv["iris"] = (torch.rand(1, n, 2, 2, generator=gen) - 0.5) * 1.2
            dv["sup"] = sv["sup"][:, 0] + 0.05
            dv["iris"] = sv["iris"][:, 0] + 0.05
        with torch.no_grad():
            want = model.receiver(src, sv, dv)
        inputs = {"source_images": src, **{f"source_{k}": v for k, v in sv.items()}, **dv}
        assert torch.equal(_chain(nets, inputs), want), family


def test_sup_only_variant_has_no_sender_network() -> None:
    cfg = tiny_config("model.num_unsup=0", "model.expr_dim=0", "model.jacobians=false")
    nets = export_networks(build_model(cfg))
    assert [n.name for n in nets] == ["source", "generator"]
    assert [s.name for s in nets[1].inputs][-2:] == ["sup", "iris"]


def test_mac_count_agrees_with_module_hooks() -> None:
    model = build_model(tiny_config()).eval()
    for net in export_networks(model):
        macs = count(net)
        ex = net.example_inputs()
        with torch.no_grad():
            hooks = count_macs(net.module, lambda net=net, ex=ex: net.module(*ex))
        # the dispatch counter also sees matmuls and functional convs (the anti-alias blur)
        assert hooks <= macs.dense < 1.1 * hooks, net.name
        if net.name == "generator":
            assert macs.sampling > 0
