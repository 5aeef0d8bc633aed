#!/bin/sh
# Install what the tests need and run them: Debian packages if missing, then the package
# in .venv, then pytest. Extra arguments go
# to pytest (e.g. `-m slow`).
set -eu
cd "$(dirname "$0")/.."
# Debian's ffmpeg (an ffprobe independent of PyAV's FFmpeg), chromium (a real WebRTC
# peer and player, driven by Playwright with executable_path=/usr/bin/chromium) and
# mkvtoolnix (mkvinfo: a Matroska reader independent of FFmpeg).
if ! command -v ffprobe >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1 || ! command -v mkvinfo >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg chromium mkvtoolnix >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
