"""Wider DTLS for the WHIP endpoint's own peer connections.

aiortc's DTLS (OpenSSL, through pyOpenSSL) offers ECDHE-ECDSA cipher suites only, and
OpenSSL's default groups. That suits browsers, whose certificates are ECDSA on P-256, but
not every publisher. In WHIP the endpoint answers ``a=setup:active`` whenever the offer
lets it, so the endpoint is the DTLS client and the publisher's certificate decides:

- GStreamer's DTLS (``webrtcbin``) serves an RSA certificate: with ECDHE-ECDSA suites only
  the handshake ends in ``no shared cipher``. The endpoint offers ECDHE-RSA suites too,
  after aiortc's own.
- FFmpeg's WHIP muxer, built on GnuTLS (PyAV's wheels), serves a P-224 certificate by
  default, and OpenSSL's client refuses a server key on a curve that is not among its own
  groups (``illegal_parameter``). The endpoint lists P-224 after OpenSSL's default groups
  where it can: with a cryptography built on OpenSSL 3.x (a distribution's, or built from
  source), version 47 or later (earlier ones bind no call to set a list of groups).
  cryptography's own wheels since 47 bundle OpenSSL 4.0, which builds the deprecated RFC
  8422 curves, P-224 among them, out of TLS: there :data:`P224_SUPPORTED` is false,
  nothing is added, and FFmpeg needs a P-256 certificate (its ``cert_file``/``key_file``).

What a browser negotiates does not change: the added suites need an RSA certificate on the
other side, and the added group comes after every group a browser supports.

aiortc has no public API for any of this; :func:`widen_dtls` relies on two of its
internals (pinned by ``tests/test_whip_dtls.py``): the peer connection's private list of
certificates, ``RTCPeerConnection._RTCPeerConnection__certificates``, read when each DTLS
transport is created, and ``RTCCertificate._create_ssl_context(srtp_profiles)``, which
builds the OpenSSL context of each handshake. Groups are set through pyOpenSSL's private
binding (``OpenSSL._util.lib.SSL_CTX_set1_curves_list`` on ``Context._context``): pyOpenSSL
has no public call for a list of groups.
"""

from __future__ import annotations

import functools

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate, SRTPProtectionProfile
from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib

#: ECDHE-RSA suites offered after aiortc's ECDHE-ECDSA ones (GStreamer's RSA certificate).
RSA_SUITES = (
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
)
#: Groups appended after OpenSSL's defaults, each where the OpenSSL in use has it.
EXTRA_GROUPS = ("P-224",)
#: OpenSSL's default TLS groups of 3.0 to 3.4, for an OpenSSL without the ``DEFAULT`` keyword.
_DEFAULT_GROUPS = ("X25519", "P-256", "X448", "P-521", "P-384")
_CERTIFICATES = "_RTCPeerConnection__certificates"


def _set_groups(ctx: SSL.Context, groups: str) -> bool:
    # cryptography < 47 binds no call for it (and SSL_CTX_set_tmp_ecdh allows one group only).
    set_groups = getattr(_ssl_lib, "SSL_CTX_set1_curves_list", None)
    if set_groups is None:
        return False
    if set_groups(ctx._context, groups.encode()) == 1:
        return True
    _ssl_lib.ERR_clear_error()
    return False


def group_supported(name: str) -> bool:
    """Whether the OpenSSL under pyOpenSSL can use the TLS group ``name`` (e.g. ``"P-224"``)."""
    return _set_groups(SSL.Context(SSL.DTLS_METHOD), name)


#: Whether FFmpeg's default P-224 certificate can be accepted (false on OpenSSL 4.0 and later).
P224_SUPPORTED = group_supported("P-224")
_EXTRA = [name for name in EXTRA_GROUPS if group_supported(name)]


@functools.cache
def wide_suites() -> str:
    """aiortc's TLS 1.2 cipher suites (read from a context it builds), then :data:`RSA_SUITES`."""
    probe = RTCCertificate.generateCertificate()._create_ssl_context(srtp_profiles=[SRTP_AES128_CM_SHA1_80])
    # pyOpenSSL freezes a context once a connection uses it: this one is only read.
    own = [name for name in SSL.Connection(probe).get_cipher_list() if not name.startswith("TLS_")]
    return ":".join(own + [name for name in RSA_SUITES if name not in own])


def widen_context(ctx: SSL.Context) -> None:
    """Set :func:`wide_suites` and add the available :data:`EXTRA_GROUPS` after OpenSSL's
    default groups, in place (before any connection uses ``ctx``)."""
    ctx.set_cipher_list(wide_suites().encode())
    if _EXTRA:
        extra = ":".join(_EXTRA)
        if not _set_groups(ctx, f"DEFAULT:{extra}"):
            _set_groups(ctx, ":".join([*_DEFAULT_GROUPS, extra]))


class WideCertificate(RTCCertificate):
    """An aiortc certificate (ECDSA, P-256) whose DTLS contexts are widened (see the module)."""

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        widen_context(ctx)
        return ctx


def widen_dtls(pc: RTCPeerConnection) -> None:
    """Give ``pc``, a new peer connection with no transport yet, a :class:`WideCertificate`.

    Raises ``RuntimeError`` if aiortc no longer keeps its certificates where this expects.
    """
    certificates = getattr(pc, _CERTIFICATES, None)
    if not (
        isinstance(certificates, list)
        and len(certificates) == 1
        and isinstance(certificates[0], RTCCertificate)
        and callable(getattr(RTCCertificate, "_create_ssl_context", None))
    ):
        raise RuntimeError(
            "aiortc internals changed: RTCPeerConnection.__certificates or "
            "RTCCertificate._create_ssl_context is not what asyncrec.whip._dtls expects"
        )
    certificates[:] = [WideCertificate.generateCertificate()]
