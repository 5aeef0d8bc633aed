"""MIME type strings: what ``parse_mime_type`` (the standard library's Content-Type parser
plus the token rules of browsers) and ``isTypeSupported`` make of the edge cases."""

from __future__ import annotations

import pytest

from asyncrec import MediaRecorder
from asyncrec._formats import parse_mime_type


@pytest.mark.parametrize(
    ("text", "essence", "params"),
    [
        pytest.param("video/webm", "video/webm", {}, id="plain"),
        pytest.param("  video/webm  ", "video/webm", {}, id="outer-whitespace"),
        pytest.param("VIDEO/WebM;CODECS=VP8", "video/webm", {"codecs": "VP8"}, id="case"),
        pytest.param('video/webm;codecs="vp9, opus"', "video/webm", {"codecs": "vp9, opus"}, id="quoted-list"),
        pytest.param('video/webm ; codecs = "vp8,opus" ', "video/webm", {"codecs": "vp8,opus"}, id="spaces"),
        pytest.param("video/webm;codecs=vp8, opus", "video/webm", {"codecs": "vp8, opus"}, id="unquoted-list"),
        pytest.param('video/webm;codecs="vp8;opus"', "video/webm", {"codecs": "vp8;opus"}, id="quoted-semicolon"),
        pytest.param("video/webm;", "video/webm", {}, id="trailing-semicolon"),
        pytest.param("video/webm;;codecs=vp8", "video/webm", {"codecs": "vp8"}, id="empty-parameter"),
        pytest.param("video/webm;codecs=vp8;codecs=vp9", "video/webm", {"codecs": "vp8"}, id="first-repeat-counts"),
        pytest.param("video/webm;rate=1;codecs=vp8", "video/webm", {"rate": "1", "codecs": "vp8"}, id="other-param"),
        pytest.param("video/webm;codecs*=utf-8''vp9", "video/webm", {}, id="rfc2231-ignored"),
    ],
)
def test_parsed(text: str, essence: str, params: dict[str, str]) -> None:
    parsed = parse_mime_type(text)
    assert parsed is not None
    assert parsed.essence == essence
    assert dict(parsed.params) == params


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(" ", id="space"),
        pytest.param("\t", id="tab"),
        pytest.param("video", id="no-slash"),
        pytest.param("video/", id="no-subtype"),
        pytest.param("/webm", id="no-type"),
        pytest.param("video/webm/x", id="two-slashes"),
        pytest.param("video /webm", id="space-in-type"),
        pytest.param("video/we bm", id="space-in-subtype"),
        pytest.param("not a mime", id="words"),
        pytest.param("video/webm=x", id="equals-in-subtype"),
        pytest.param("video/webm;codecs", id="bare-parameter"),
        pytest.param("video/webm;codecs=vp8;opus", id="bare-second-parameter"),
        pytest.param("video/webm;codecs=", id="empty-value"),
        pytest.param("video/webm;codecs*", id="bare-rfc2231-name"),
        pytest.param('video/webm;codecs="vp8', id="unterminated-quote"),
        pytest.param('video/webm;codecs="vp8"x', id="after-quote"),
        pytest.param('video/webm;codecs="a\\"b"', id="escaped-quote"),
        pytest.param("video/webm;=vp8", id="no-name"),
        pytest.param("video/webm;co decs=vp8", id="space-in-name"),
    ],
)
def test_not_a_mime_type(text: str) -> None:
    assert parse_mime_type(text) is None


def test_codecs_list() -> None:
    parsed = parse_mime_type('video/webm; codecs=" vp9 ,  opus "')
    assert parsed is not None
    assert parsed.codecs == ["vp9", "opus"]
    plain = parse_mime_type("video/webm")
    assert plain is not None
    assert plain.codecs == []


@pytest.mark.parametrize(
    ("text", "supported"),
    [
        pytest.param("", True, id="empty-is-the-default"),
        pytest.param(" ", False, id="whitespace"),
        pytest.param("VIDEO/WEBM", True, id="upper-case"),
        pytest.param("Video/WebM;Codecs=VP8,Opus", True, id="mixed-case-codecs"),
        pytest.param("  video/webm  ", True, id="outer-whitespace"),
        pytest.param('video/webm;codecs="vp8,opus"', True, id="quoted-list"),
        pytest.param('video/webm;codecs=" vp8 , opus "', True, id="quoted-list-spaces"),
        pytest.param("video/webm;codecs=vp8, opus", True, id="unquoted-list-space"),
        pytest.param('video/webm;codecs=""', False, id="quoted-empty-codecs"),
        pytest.param("video/webm;codecs=", False, id="empty-codecs"),
        pytest.param("video/webm;codecs=vp8,", False, id="empty-codec-entry"),
        pytest.param('video/webm;codecs="vp8;opus"', False, id="quoted-semicolon"),
        pytest.param("video/webm;codecs=vp8;codecs=foo", True, id="first-repeat-counts"),
        pytest.param("video/webm;codecs=foo;codecs=vp8", False, id="first-repeat-counts-unknown"),
        pytest.param("audio/mp4;codecs=mp4a.40.2", True, id="aac-lc"),
        pytest.param("audio/mp4;codecs=mp4a.40.5", False, id="he-aac"),
        pytest.param("video/webm;vp9", False, id="codec-without-codecs="),
        pytest.param("text/plain", False, id="text-plain"),
        pytest.param("a/b/c", False, id="two-slashes"),
    ],
)
def test_is_type_supported_edge_cases(text: str, supported: bool) -> None:
    assert MediaRecorder.isTypeSupported(text) is supported
