#!/bin/sh
# Install what the tests need and run them: Debian packages if missing, then the package
# in .venv, then pytest. Extra arguments go
# to pytest (e.g. `-m slow`).
set -eu
cd "$(dirname "$0")/.."
# Debian's ffmpeg (an ffprobe independent of PyAV's FFmpeg), chromium (a real WebRTC
# peer and player, driven by Playwright with executable_path=/usr/bin/chromium),
# mkvtoolnix (mkvinfo: a Matroska reader independent of FFmpeg), and the other real WHIP
# publishers: firefox-esr, GStreamer's webrtcbin driven from Debian's python3 (python3-gi,
# gir1.2-gst-plugins-bad-1.0, the plugins with webrtcbin, libnice, VP8, x264 and Opus), and
# iproute2 + util-linux (ip, unshare, nsenter: Firefox runs in a network namespace with
# only lo).
PACKAGES="ffmpeg chromium mkvtoolnix firefox-esr python3-gi gir1.2-gst-plugins-bad-1.0 \
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
gstreamer1.0-plugins-ugly gstreamer1.0-nice iproute2 util-linux"
# Ceph's S3 gateway, radosgw, on a throwaway single-node cluster (a monitor, a memstore
# OSD): a real S3 server for the object storage tests (tests/s3_server.py). Installed
# without recommends: with them Ceph pulls in hundreds of packages it does not need here.
CEPH_PACKAGES="ceph-mon ceph-osd radosgw ceph-common"
# nginx, the load balancer of deploy/nginx.conf, in front of test workers
# (tests/load_balancer.py). Debian's "nginx" is the binary with the proxy module built in
# (nginx-light and nginx-core only add modules to it); without recommends, like Ceph.
NGINX_PACKAGES="nginx"
missing() {
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            printf ' %s' "$package"
        fi
    done
}
# shellcheck disable=SC2086 # one word per package
MISSING=$(missing $PACKAGES)
# shellcheck disable=SC2086
MISSING_CEPH=$(missing $CEPH_PACKAGES)
# shellcheck disable=SC2086
MISSING_NGINX=$(missing $NGINX_PACKAGES)
if [ -n "$MISSING$MISSING_CEPH$MISSING_NGINX" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    if [ -n "$MISSING" ]; then
        # shellcheck disable=SC2086 # one word per package
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
    fi
    if [ -n "$MISSING_CEPH" ]; then
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $MISSING_CEPH >/dev/null
    fi
    if [ -n "$MISSING_NGINX" ]; then
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $MISSING_NGINX >/dev/null
        # Where invoke-rc.d may start services, the package starts a system nginx on port 80.
        # The tests run their own (their configuration, their ports): stop that one.
        if [ -s /run/nginx.pid ] && $SUDO kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
            $SUDO nginx -s stop
        fi
    fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
