"""``facecodec call``: a real call over WebRTC (docs/call.md).

    facecodec call loopback --video talk.mp4 --kbps 6 --loss 0.05 --jitter-ms 100
    facecodec call receive --listen 0.0.0.0:8765 --record call.mp4 --report call.json
    facecodec call send --video talk.mp4 --to 192.168.1.20:8765 --kbps 13
"""

from __future__ import annotations

import asyncio
import json
import platform
from pathlib import Path

import click

from facecodec.defaults import SOURCE_CHOICE, SOURCE_CHOICES
from facecodec.errors import InputError

PROTECTIONS = ["none", "light", "strong"]


def _need_aiortc() -> None:
    try:
        import aiortc  # noqa: F401 - only checks that the extra is installed
    except ImportError:
        raise click.ClickException(
            "facecodec call needs aiortc: pip install 'facecodec[call]' (or pip install "
            "aiortc)") from None


def _media_options(f):
    for deco in reversed([
        click.option("--kbps", type=float, default=6.0, show_default=True,
                     help="The stream's budget (Encoder(kbps=...)); 0: the unbudgeted "
                          "defaults."),
        click.option("--audio/--no-audio", default=False, show_default=True,
                     help="Send the input's sound (in the stream: Opus, or Codec 2 below "
                          "Opus's floor); a budget with sound must be above the plan's floor "
                          "(5.0 kbps for the shipped model)."),
        click.option("--protect", type=click.Choice(PROTECTIONS), default="none",
                     show_default=True, help="Loss protection presets (docs/format.md 6)."),
        click.option("--source-choice", type=click.Choice(SOURCE_CHOICES),
                     default=SOURCE_CHOICE, show_default=True,
                     help="'render': the sender draws a frame a second as the receiver will "
                          "and sends a new source when the call is not covered (closed "
                          "loop, docs/codec.md); 'pose': by head yaw."),
        click.option("--packet-frames", type=click.IntRange(1, 8), default=1,
                     show_default=True,
                     help="Frames per packet: each data-channel message costs ~57 bytes of "
                          "framing, so 3 cuts that cost to a third, at 133 ms more delay."),
        click.option("--base", is_flag=True,
                     help="A base layer (issue 20): the face also coded with SVT-AV1 in "
                          "what the budget leaves after the frames, the sound and three "
                          "sources (none below 8 kbps; e.g. --kbps 20), fused with the "
                          "animation at the receiver. Needs --kbps."),
        click.option("--fps", type=float, default=15.0, show_default=True),
        click.option("--seconds", type=float, default=None,
                     help="Send only this much of the input."),
        click.option("--model", default=None, help="Model directory or name."),
        click.option("--threads", type=int, default=1, show_default=True,
                     help="PyTorch threads (each end runs one network)."),
        click.option("--one-chain", is_flag=True,
                     help="After a loss, keep coding each frame against the one before "
                          "(default: two chains of frames for 10 s, so that a further "
                          "loss drops every other frame instead of freezing; docs/call.md)."),
    ]):
        f = deco(f)
    return f


def _receive_options(f):
    for deco in reversed([
        click.option("--no-feedback", is_flag=True,
                     help="Do not ask the sender for recovery frames after a loss, nor to "
                          "pack frames when the link queues."),
        click.option("--fixed-packing", is_flag=True,
                     help="Do not ask the sender to pack several frames per message when "
                          "the link queues (the receiver's congestion feedback, "
                          "docs/call.md)."),
        click.option("--no-lip-sync", is_flag=True,
                     help="A call with sound: show each picture as soon as it is drawn "
                          "(default: held until at most 60 ms ahead of its sound, "
                          "docs/call.md)."),
        click.option("--show", is_flag=True, help="Show the call in an OpenCV window."),
        click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Record what the receiver shows (and hears)."),
        click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="Write the report as JSON here."),
    ]):
        f = deco(f)
    return f


def _source(video: Path | None, camera: str | None, camera_format: str | None, fps: float,
            seconds: float | None):
    from facecodec.call.peer import CameraInput, FileInput
    if (video is None) == (camera is None):
        raise click.UsageError("give one of --video FILE or --camera DEVICE")
    if video is not None:
        if not video.is_file():
            raise InputError(f"{video}: no such file")
        return FileInput(video, fps, seconds)
    return CameraInput(camera, camera_format or _camera_format(), fps, seconds)


def _camera_format() -> str:
    return {"Linux": "v4l2", "Darwin": "avfoundation", "Windows": "dshow"}.get(
        platform.system(), "v4l2")


def _options(kbps, audio, protect, fps, seconds, model, threads, no_feedback=False,
             show=False, record=None, source_choice=SOURCE_CHOICE, packet_frames=1,
             fixed_packing=False, one_chain=False, no_lip_sync=False, base=False):
    import torch

    from facecodec.call.peer import CallOptions
    from facecodec.codec import budget_plan
    torch.set_num_threads(threads)
    if base and not kbps:
        raise click.UsageError("--base is planned by a budget: give --kbps too")
    if kbps:  # the stream's rate, which a thin budget halves: the sender reads at it
        planned = budget_plan(model, kbps, fps, audio).fps
        if planned != fps:
            click.echo(f"a budget of {kbps:g} kbps sends {planned:g} frames/s", err=True)
            fps = planned
    return CallOptions(kbps=kbps or None, audio=audio, protection=protect,
                       feedback=not no_feedback, fps=fps, seconds=seconds, model=model,
                       show=show, record=record, threads=threads,
                       source_choice=source_choice, packet_frames=packet_frames,
                       adapt_packing=not fixed_packing, chains=not one_chain,
                       lip_sync=not no_lip_sync, base=base)


def _write_report(report: dict, path: Path | None) -> None:
    from facecodec.call.summary import text_summary
    click.echo(text_summary(report))
    if path is not None:
        path.write_text(json.dumps(report, indent=1) + "\n")
        click.echo(f"report: {path}")


def _host_port(value: str, default_host: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}") from None


@click.group("call")
def call() -> None:
    """A call over WebRTC: loopback through an emulated link, or two machines."""


@call.command("loopback")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A video played in real time as the camera (default: the example).")
@click.option("--camera", default=None, help="A camera device instead (e.g. /dev/video0).")
@click.option("--camera-format", default=None, help="PyAV input format (default: v4l2, "
              "avfoundation or dshow by platform).")
@_media_options
@_receive_options
@click.option("--loss", type=float, default=0.0, show_default=True,
              help="Datagram loss probability, each direction.")
@click.option("--delay-ms", type=float, default=0.0, show_default=True)
@click.option("--jitter-ms", type=float, default=0.0, show_default=True,
              help="Extra delay drawn in [0, J] per datagram, order kept.")
@click.option("--reorder", type=float, default=0.0, show_default=True,
              help="Probability a datagram is held 50 ms more (overtaken).")
@click.option("--cap-kbps", type=float, default=None, help="Link rate, IP+UDP counted.")
@click.option("--cut-after", type=click.IntRange(0), default=None,
              help="The link carries this many datagrams each way, then none (a peer gone).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--logs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write both peers' raw logs (JSON), what the report is made from.")
def loopback(video, camera, camera_format, kbps, audio, protect, source_choice, packet_frames,
             base, fps, seconds, model, threads, one_chain, no_feedback, fixed_packing,
             no_lip_sync, show, record, report,
             loss, delay_ms, jitter_ms, reorder, cap_kbps, cut_after, seed, logs) -> None:
    """Both peers on this machine, through a UDP relay on 127.0.0.1 that degrades the
    link; prints the report (JSON with --report)."""
    _need_aiortc()
    from facecodec.call.link import LinkProfile
    from facecodec.call.run import loopback_call
    if video is None and camera is None:
        import tempfile

        from facecodec.examples import make_example_video
        video = make_example_video(Path(tempfile.mkdtemp()) / "example.mp4")
    try:
        profile = LinkProfile(loss=loss, delay_ms=delay_ms, jitter_ms=jitter_ms,
                              reorder=reorder, cap_kbps=cap_kbps, cut_after=cut_after)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    opts = _options(kbps, audio, protect, fps, seconds, model, threads, no_feedback, show,
                    record, source_choice, packet_frames, fixed_packing, one_chain,
                    no_lip_sync, base)
    if video is not None and not video.is_file():
        raise InputError(f"{video}: no such file")
    spec = ({"video": str(video)} if video is not None else
            {"camera": camera, "format": camera_format or _camera_format()})
    result = asyncio.run(loopback_call(spec, opts, profile, seed=seed, logs=logs))
    _write_report(result, report)


@call.command("receive")
@click.option("--listen", default="0.0.0.0:8765", show_default=True,
              help="Where to wait for the sender's offer (HOST:PORT).")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--model", default=None)
@_receive_options
def receive(listen, threads, model, no_feedback, fixed_packing, no_lip_sync, show, record,
            report) -> None:
    """Wait for a sender, then show / record the call and print the report."""
    _need_aiortc()
    from facecodec.call.run import receive_call
    host, port = _host_port(listen, "0.0.0.0")
    opts = _options(None, False, "none", 15.0, None, model, threads, no_feedback, show, record,
                    fixed_packing=fixed_packing, no_lip_sync=no_lip_sync)
    click.echo(f"waiting for a sender on {host}:{port}", err=True)
    result = asyncio.run(receive_call(opts, host, port))
    _write_report(result, report)


@call.command("send")
@click.option("--to", "to", required=True, help="The receiver's HOST:PORT.")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--camera", default=None)
@click.option("--camera-format", default=None)
@_media_options
def send(to, video, camera, camera_format, kbps, audio, protect, source_choice, packet_frames,
         base, fps, seconds, model, threads, one_chain) -> None:
    """Call a receiver: send the camera or a video file played in real time."""
    _need_aiortc()
    from facecodec.call.run import send_call
    host, port = _host_port(to, "127.0.0.1")
    opts = _options(kbps, audio, protect, fps, seconds, model, threads,
                    source_choice=source_choice, packet_frames=packet_frames,
                    one_chain=one_chain, base=base)
    src = _source(video, camera, camera_format, opts.fps, seconds)
    log = asyncio.run(send_call(src, opts, host, port))
    click.echo(f"sent {len(log.capture)} frames, {sum(n for _, n, _ in log.sent)} bytes; "
               f"feedback acted on: {log.feedback}")


COMMANDS = [call]
