"""Publish a test pattern and a tone over WHIP with GStreamer's webrtcbin, then DELETE.

Run with Debian's own python3 (GStreamer's Python bindings: python3-gi,
gir1.2-gst-plugins-bad-1.0), not the project's venv::

    /usr/bin/python3 tests/gst_whip_publish.py http://127.0.0.1:PORT/whip --codec vp8 --seconds 3

The script does what a WHIP client does (RFC 9725, no trickle): it waits for ICE gathering
to complete, POSTs the whole offer with urllib, applies the answer, sends for ``--seconds``
once the peer connection is connected, then DELETEs the session and stops. It prints one
line per step on stderr and exits 0 on success, 1 with a reason otherwise (``--timeout``
bounds the whole run). Debian's ``simple-whip-client`` is not used: it aborts at start
(it links libsoup 2 while libnice's gupnp-igd pulls in libsoup 3).

libnice's own discovery never gathers a loopback address, not even in a network namespace
with only ``lo`` (gathering then finds nothing and never completes): ``--ice-address
127.0.0.1`` hands it the address through webrtcbin's ``add-local-ip-address``, and then
127.0.0.1 is its only candidate, with no namespace needed.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = {
    "vp8": (
        "vp8enc deadline=1 cpu-used=8 target-bitrate=600000 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! "
        "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
    ),
    # aiortc takes H.264 Constrained Baseline in packetization mode 1.
    "h264": (
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=600 ! "
        "video/x-h264,profile=constrained-baseline ! "
        "rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency ! "
        "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000"
    ),
}
PIPELINE = (
    "webrtcbin name=webrtc bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate=30/1 ! "
    "videoconvert ! queue ! {video} ! webrtc. "
    "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! queue ! "
    "opusenc ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! "
    "webrtc. "
)


def log(message: str) -> None:
    print(f"gst_whip_publish: {message}", file=sys.stderr, flush=True)


class Publisher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.parse_launch(PIPELINE.format(video=VIDEO[args.codec], width=args.width, height=args.height))
        self.webrtc = self.pipeline.get_by_name("webrtc")
        # Kept for the run: dropping PyGObject's wrapper of this (initially unowned) object
        # unrefs it from under webrtcbin.
        self.ice = ice = self.webrtc.get_property("ice-agent")
        ice.set_property("ice-tcp", False)  # aiortc has no ICE-TCP
        for address in args.ice_address:
            if not ice.emit("add-local-ip-address", address):
                raise SystemExit(f"gst_whip_publish: error: libnice refuses local address {address}")
        self.location: str | None = None
        self.error: str | None = None
        self.connected_at: float | None = None
        self.posted = False
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)

    # -- helpers -----------------------------------------------------------------------------------
    def fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            log(f"error: {reason}")
        self.loop.quit()

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.args.token:
            headers["Authorization"] = f"Bearer {self.args.token}"
        return headers

    # -- signalling --------------------------------------------------------------------------------
    def on_negotiation_needed(self, element: Gst.Element) -> None:
        for index in range(8):
            transceiver = element.emit("get-transceiver", index)
            if transceiver is None:
                break
            transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, element: Gst.Element, _data: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            GLib.idle_add(self.fail, "webrtcbin made no offer")
            return
        element.emit("set-local-description", offer, Gst.Promise.new())
        log("offer created; gathering ICE candidates")

    def on_gathering(self, element: Gst.Element, _pspec: object) -> None:
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.posted:
            self.posted = True
            GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
        log(f"POST {self.args.url} with {len(candidates)} candidates: {candidates}")
        if not candidates:
            self.fail("no ICE candidate gathered (libnice skips loopback: give --ice-address 127.0.0.1)")
            return False
        request = urllib.request.Request(
            self.args.url, data=sdp.encode(), method="POST", headers=self.headers("application/sdp")
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read().decode()
                location = response.headers.get("Location")
        except urllib.error.HTTPError as exc:
            self.fail(f"POST answered {exc.code}: {exc.read().decode(errors='replace').strip()}")
            return False
        except OSError as exc:
            self.fail(f"POST failed: {exc}")
            return False
        if status != 201 or not location:
            self.fail(f"POST answered {status} without Location")
            return False
        self.location = urllib.parse.urljoin(self.args.url, location)
        codecs = [line.split(" ", 1)[1] for line in body.splitlines() if line.startswith("a=rtpmap:")]
        log(f"201, session {self.location}, answer codecs {' '.join(codecs)}")
        ok, message = GstSdp.SDPMessage.new_from_text(body)
        if ok != GstSdp.SDPResult.OK:
            self.fail("the answer is not SDP")
            return False
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        return False

    def on_connection_state(self, element: Gst.Element, _pspec: object) -> None:
        state = element.get_property("connection-state")
        log(f"connection state {state.value_nick}")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and self.connected_at is None:
            self.connected_at = time.monotonic()
            GLib.timeout_add(int(self.args.seconds * 1000), self.finish)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self.fail, "the peer connection failed")

    def on_bus_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        self.fail(f"pipeline error: {error.message} ({debug})")

    def finish(self) -> bool:
        log(f"sent {time.monotonic() - (self.connected_at or 0):.2f} s; stopping")
        self.loop.quit()
        return False

    def delete(self) -> None:
        if self.location is None:
            return
        request = urllib.request.Request(self.location, method="DELETE", headers=self.headers())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                log(f"DELETE answered {response.status}")
        except (urllib.error.HTTPError, OSError) as exc:
            self.fail(f"DELETE failed: {exc}")

    def run(self) -> int:
        GLib.timeout_add(int(self.args.timeout * 1000), self.fail, f"not done in {self.args.timeout} s")
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            log("error: the pipeline does not start")
            return 1
        try:
            self.loop.run()
        finally:
            # DELETE first, while the media still flows, then stop the pipeline.
            self.delete()
            self.pipeline.set_state(Gst.State.NULL)
        if self.error is None and self.connected_at is None:
            self.error = "never connected"
        if self.error is not None:
            log(f"failed: {self.error}")
            return 1
        log("done")
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--codec", choices=sorted(VIDEO), default="vp8")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to send once connected")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--token")
    parser.add_argument(
        "--ice-address",
        action="append",
        default=[],
        help="gather ICE candidates on this local address only (repeatable; libnice's own discovery skips loopback)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on the whole run")
    args = parser.parse_args()
    Gst.init(None)
    missing = [
        name
        for name in ("webrtcbin", "nicesrc", "dtlssrtpenc", "vp8enc", "x264enc", "opusenc")
        if Gst.ElementFactory.find(name) is None
    ]
    if missing:
        log(f"error: GStreamer elements missing: {missing}")
        return 1
    return Publisher(args).run()


if __name__ == "__main__":
    sys.exit(main())
