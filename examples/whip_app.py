"""WHIP ingest inside your own aiohttp application: record every publisher, and do
something else with its tracks at the same time.

    python examples/whip_app.py --port 8080 --ice-host 127.0.0.1

Publish with any WHIP client (OBS, GStreamer's whipclientsink, a browser) to
http://HOST:8080/ingest; recordings go to ./recordings. Needs the server extra (aiohttp):
pip install 'asyncrec[server]'.
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from asyncrec import MediaRecorder, WhipEndpoint, WhipSession
from asyncrec.whip import record_sessions

record = record_sessions("recordings", mimeType="video/webm;codecs=vp9,opus", timeslice=1000)


async def on_session(session: WhipSession) -> None:
    """Record the session, and log its first chunk's size as an example of live use."""
    print(f"session {session.id}: {[t.kind for t in session.stream.getTracks()]}")
    monitor = MediaRecorder(session.stream, mimeType="audio/webm")
    monitor.ondataavailable = lambda event: print(f"session {session.id}: {len(event.data)} bytes of audio")
    async with monitor:
        monitor.start(5000)
        await record(session)  # returns when the session ends and its file is final


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ice-host", action="append")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    app = web.Application()
    WhipEndpoint(on_session, path="/ingest", ice_hosts=args.ice_host).add_routes(app)
    web.run_app(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
