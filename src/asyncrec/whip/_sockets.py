"""Receive buffers of a session's UDP sockets, large enough to ride out a busy moment.

A publisher's media arrives on the UDP sockets aioice opened for the session. Linux gives
a socket about 208 KiB of receive buffer by default, which on loopback (each packet's
buffer is charged about 2.3 KiB) holds some 90 packets: under half a second of one 2 Mb/s
720p publisher. When the event loop is late reading (a server holding dozens of
publishers on every core, a garbage collection), the kernel drops what does not fit, and
a copied recording loses everything to the next key frame. Media servers raise the
buffer (GStreamer's ``udpsrc buffer-size``, Janus, MediaMTX's ``readBufferSize``);
:func:`widen_receive_buffers` asks for ``RECEIVE_BUFFER`` per socket. The kernel caps it
at ``net.core.rmem_max`` (4 MiB on Debian), and nothing is allocated until used.

The sockets are aioice's (``RTCIceTransport._connection._protocols``, each a datagram
protocol with its ``transport``): internals of aiortc 1.16 and aioice 0.10, looked up
defensively; when they are missing nothing is changed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

#: Bytes of receive buffer asked for per UDP socket of a session.
RECEIVE_BUFFER = 4 * 1024 * 1024


def session_sockets(pc: RTCPeerConnection) -> list[Any]:
    """The UDP sockets ICE opened for ``pc`` (after ``setLocalDescription``), as asyncio
    hands them out (``TransportSocket``: ``setsockopt``/``getsockopt`` work)."""
    found: list[Any] = []
    for ice in getattr(pc, "_RTCPeerConnection__iceTransports", ()):
        for protocol in getattr(getattr(ice, "_connection", None), "_protocols", ()):
            transport: Any = getattr(protocol, "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                found.append(sock)
    return found


def widen_receive_buffers(pc: RTCPeerConnection, size: int = RECEIVE_BUFFER) -> int:
    """Ask for ``size`` bytes of receive buffer on every UDP socket of ``pc``; returns how
    many sockets were widened. Never raises."""
    widened = 0
    for sock in session_sockets(pc):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            widened += 1
    return widened


__all__ = ["RECEIVE_BUFFER", "session_sockets", "widen_receive_buffers"]
