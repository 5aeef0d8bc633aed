"""asyncrec.whip._dtls: the aiortc internals it relies on (pinned: these fail loudly when
aiortc changes them), and in-process handshakes on loopback between an aiortc publisher
with a chosen certificate and a widened peer connection, the WHIP endpoint's included.

The real publishers (GStreamer, FFmpeg, Firefox, Chromium) are in their own slow tests.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate, RTCDtlsTransport, generate_certificate
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from asyncrec import FrameTrack, moving_pattern
from asyncrec.whip import WhipEndpoint, WhipSession
from asyncrec.whip._dtls import (
    P224_SUPPORTED,
    RSA_SUITES,
    WideCertificate,
    group_supported,
    wide_suites,
    widen_dtls,
)
from whip_client import Publisher, wait_until

CONNECT_TIMEOUT = 15.0
#: aiortc 1.16's own list (RTCCertificate._create_ssl_context).
AIORTC_SUITES = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
]


def rsa_certificate() -> RTCCertificate:
    """A DTLS side like GStreamer's: an RSA 2048 certificate, and suites it can serve (a
    plain aiortc context offers ECDHE-ECDSA suites only, which no RSA certificate serves)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return WideCertificate(key=key, cert=generate_certificate(key))  # type: ignore[arg-type]


def certificates(pc: RTCPeerConnection) -> list[RTCCertificate]:
    return pc._RTCPeerConnection__certificates  # type: ignore[attr-defined,no-any-return]


def dtls_of(pc: RTCPeerConnection) -> RTCDtlsTransport:
    return pc.getTransceivers()[0].receiver.transport


def negotiated(pc: RTCPeerConnection) -> tuple[str | None, str | None]:
    """The cipher suite and group of ``pc``'s (connected) DTLS session."""
    connection = dtls_of(pc)._ssl
    assert connection is not None
    return connection.get_cipher_name(), connection.get_group_name()


# -- pins: the aiortc internals _dtls uses ----------------------------------------------------------------
async def test_aiortc_keeps_one_certificate_per_peer_connection_where_widen_dtls_replaces_it() -> None:
    pc = RTCPeerConnection()
    try:
        [certificate] = certificates(pc)
        assert type(certificate) is RTCCertificate
        widen_dtls(pc)
        [wide] = certificates(pc)
        assert isinstance(wide, WideCertificate)
        # A transport created afterwards uses it.
        pc.addTransceiver("video", direction="recvonly")
        assert dtls_of(pc)._RTCDtlsTransport__local_certificate is wide  # type: ignore[attr-defined]
    finally:
        await pc.close()


async def test_the_answer_carries_the_wide_certificates_fingerprint() -> None:
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        widen_dtls(pc)
        publisher.addTransceiver("audio", direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        await pc.setRemoteDescription(publisher.localDescription)
        await pc.setLocalDescription(await pc.createAnswer())
        [wide] = certificates(pc)
        fingerprint = next(f for f in wide.getFingerprints() if f.algorithm == "sha-256")
        assert f"a=fingerprint:sha-256 {fingerprint.value}" in pc.localDescription.sdp
        assert "a=setup:active" in pc.localDescription.sdp, "the endpoint is the DTLS client"
    finally:
        await pc.close()
        await publisher.close()


def test_aiortc_builds_its_ssl_context_in_create_ssl_context_with_ecdsa_suites_only() -> None:
    assert list(inspect.signature(RTCCertificate._create_ssl_context).parameters) == ["self", "srtp_profiles"]
    ctx = RTCCertificate.generateCertificate()._create_ssl_context(srtp_profiles=[SRTP_AES128_CM_SHA1_80])
    assert isinstance(ctx, SSL.Context)
    suites = [name for name in SSL.Connection(ctx).get_cipher_list() if not name.startswith("TLS_")]
    # If aiortc adds ECDHE-RSA suites itself (its PR 1392), the cipher part of _dtls can go.
    assert suites == AIORTC_SUITES


def test_wide_contexts_offer_aiortcs_suites_first_then_ecdhe_rsa() -> None:
    assert wide_suites().split(":") == AIORTC_SUITES + list(RSA_SUITES)
    ctx = WideCertificate.generateCertificate()._create_ssl_context(srtp_profiles=[SRTP_AES128_CM_SHA1_80])
    suites = [name for name in SSL.Connection(ctx).get_cipher_list() if not name.startswith("TLS_")]
    assert suites == AIORTC_SUITES + list(RSA_SUITES)


def test_p224_support_is_what_the_openssl_under_pyopenssl_says() -> None:
    """OpenSSL 4.0 (bundled by cryptography >= 47) builds P-224 out of TLS; 3.x has it."""
    assert group_supported("P-256")
    assert group_supported("P-224") == P224_SUPPORTED
    version = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    if version.startswith("OpenSSL 3."):
        assert P224_SUPPORTED, version


def test_widen_dtls_fails_loudly_when_aiortcs_internals_move() -> None:
    class Moved:
        pass

    with pytest.raises(RuntimeError, match="aiortc internals changed"):
        widen_dtls(Moved())  # type: ignore[arg-type]


# -- handshakes, in process ---------------------------------------------------------------------------------
async def handshake(publisher_certificate: RTCCertificate | None, *, widen: bool) -> tuple[str, str, RTCPeerConnection]:
    """An aiortc publisher (``publisher_certificate``, else aiortc's own) offering video to a
    peer connection (widened or not) that answers: both connection states once settled,
    and the answering peer connection (the caller closes it)."""
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if publisher_certificate is not None:
        certificates(publisher)[:] = [publisher_certificate]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if widen:
        widen_dtls(pc)
    track = FrameTrack(moving_pattern(160, 120), fps=15)
    settled = {"connected", "failed", "closed"}
    try:
        publisher.addTransceiver(track, direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        await pc.setRemoteDescription(publisher.localDescription)
        await pc.setLocalDescription(await pc.createAnswer())
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=pc.localDescription.sdp, type="answer"))
        await wait_until(
            lambda: pc.connectionState in settled and publisher.connectionState in settled,
            CONNECT_TIMEOUT,
            "both peer connections to settle",
        )
        return pc.connectionState, publisher.connectionState, pc
    finally:
        track.stop()
        await publisher.close()


@pytest.fixture
async def answerers() -> AsyncIterator[list[RTCPeerConnection]]:
    pcs: list[RTCPeerConnection] = []
    yield pcs
    for pc in pcs:
        await pc.close()


async def test_an_rsa_publisher_fails_against_plain_aiortc(
    loopback_ice: None, answerers: list[RTCPeerConnection]
) -> None:
    """Why _dtls exists: aiortc alone offers no suite an RSA certificate can serve ("no
    shared cipher", what GStreamer's webrtcbin gets)."""
    mine, theirs, pc = await handshake(rsa_certificate(), widen=False)
    answerers.append(pc)
    assert (mine, theirs) != ("connected", "connected")
    assert "failed" in (mine, theirs)


async def test_an_rsa_publisher_connects_to_a_widened_peer_connection(
    loopback_ice: None, answerers: list[RTCPeerConnection]
) -> None:
    mine, theirs, pc = await handshake(rsa_certificate(), widen=True)
    answerers.append(pc)
    assert (mine, theirs) == ("connected", "connected")
    cipher, _group = negotiated(pc)
    assert (cipher or "").startswith("ECDHE-RSA-"), cipher


async def test_an_ecdsa_publisher_negotiates_what_it_did_without_widening(
    loopback_ice: None, answerers: list[RTCPeerConnection]
) -> None:
    """What browsers (ECDSA certificates) get is unchanged: same suite, same group."""
    results = []
    for widen in (False, True):
        mine, theirs, pc = await handshake(None, widen=widen)
        answerers.append(pc)
        assert (mine, theirs) == ("connected", "connected")
        results.append(negotiated(pc))
    plain, wide = results
    assert wide == plain
    assert (wide[0] or "").startswith("ECDHE-ECDSA-"), wide
    assert (wide[1] or "").lower() in ("x25519", "prime256v1", "secp256r1"), wide


async def test_a_p224_publisher_connects_where_openssl_has_p224(
    loopback_ice: None, answerers: list[RTCPeerConnection]
) -> None:
    """FFmpeg's default certificate is ECDSA on P-224; with OpenSSL 4.0 neither side can use it."""
    key = ec.generate_private_key(ec.SECP224R1())
    certificate = RTCCertificate(key=key, cert=generate_certificate(key))
    mine, theirs, pc = await handshake(certificate, widen=True)
    answerers.append(pc)
    if P224_SUPPORTED:
        assert (mine, theirs) == ("connected", "connected")
    else:
        assert "failed" in (mine, theirs)


async def test_the_whip_endpoint_widens_its_peer_connections(loopback_ice: None) -> None:
    """An RSA publisher through WhipEndpoint's POST: connected (the endpoint's widen_dtls call)."""
    sessions: list[WhipSession] = []
    endpoint = WhipEndpoint(sessions.append)
    app = web.Application()
    endpoint.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with Publisher(video=False, audio=False) as publisher, aiohttp.ClientSession() as http:
            # Before any transceiver: each DTLS transport takes the certificate when created.
            certificates(publisher.pc)[:] = [rsa_certificate()]
            publisher.tracks.append(FrameTrack(moving_pattern(160, 120), fps=15))
            publisher.pc.addTransceiver(publisher.tracks[0], direction="sendonly")
            await publisher.publish(http, str(server.make_url("/whip")))
            await publisher.wait_connected()
            await wait_until(lambda: bool(sessions), 5, "the session")
            [session] = sessions
            await wait_until(lambda: session.pc.connectionState == "connected", CONNECT_TIMEOUT, "the endpoint side")
            assert isinstance(certificates(session.pc)[0], WideCertificate)
            assert (negotiated(session.pc)[0] or "").startswith("ECDHE-RSA-")
            assert await publisher.delete(http) == 200
    finally:
        await server.close()
