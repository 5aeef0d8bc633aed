"""MediaStream: a set of tracks, as in Media Capture and Streams."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import av


@runtime_checkable
class Track(Protocol):
    """What asyncrec needs of a track: aiortc's ``MediaStreamTrack`` contract.

    ``recv()`` returns an ``av.VideoFrame`` or ``av.AudioFrame`` and raises
    ``aiortc.mediastreams.MediaStreamError`` once the track has ended.
    """

    @property
    def kind(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def readyState(self) -> str: ...  # noqa: N802 - W3C spelling

    async def recv(self) -> av.VideoFrame | av.AudioFrame: ...


TrackSetListener = Callable[[str, Track], None]


class MediaStream:
    """A set of audio and video tracks, recorded together by a MediaRecorder.

    ``active`` is True while any track is not ended. Adding or removing a track tells the
    recorders of the stream (a recorder that is recording then stops with
    ``InvalidModificationError``, as the spec says).
    """

    def __init__(self, tracks: Iterable[Track] = ()) -> None:
        self._id = str(uuid.uuid4())
        self._tracks: dict[str, Track] = {}
        self._listeners: list[TrackSetListener] = []
        for track in tracks:
            self._tracks.setdefault(track.id, track)

    def __repr__(self) -> str:
        kinds = ",".join(t.kind for t in self._tracks.values())
        return f"<MediaStream {self._id} [{kinds}]>"

    @property
    def id(self) -> str:
        """A unique identifier for this stream."""
        return self._id

    @property
    def active(self) -> bool:
        """True while any track of the stream is not ended."""
        return any(t.readyState != "ended" for t in self._track_map().values())

    def getTracks(self) -> list[Track]:  # noqa: N802 - W3C spelling
        """Every track of the stream."""
        return list(self._track_map().values())

    def getAudioTracks(self) -> list[Track]:  # noqa: N802 - W3C spelling
        """The audio tracks of the stream."""
        return [t for t in self._track_map().values() if t.kind == "audio"]

    def getVideoTracks(self) -> list[Track]:  # noqa: N802 - W3C spelling
        """The video tracks of the stream."""
        return [t for t in self._track_map().values() if t.kind == "video"]

    def getTrackById(self, trackId: str) -> Track | None:  # noqa: N802,N803 - W3C spelling
        """The track with id ``trackId``, or None."""
        return self._track_map().get(trackId)

    def addTrack(self, track: Track) -> None:  # noqa: N802 - W3C spelling
        """Add ``track``; a track already in the stream is left as it is."""
        if track.id in self._tracks:
            return
        self._tracks[track.id] = track
        self._notify("addtrack", track)

    def removeTrack(self, track: Track) -> None:  # noqa: N802 - W3C spelling
        """Remove ``track``; a track not in the stream is ignored."""
        if self._tracks.pop(track.id, None) is None:
            return
        self._notify("removetrack", track)

    def _track_map(self) -> dict[str, Track]:
        """The track set; a subclass may open its source here first."""
        return self._tracks

    # Internal: recorders watch the track set.
    def _add_listener(self, listener: TrackSetListener) -> None:
        self._listeners.append(listener)

    def _remove_listener(self, listener: TrackSetListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, change: str, track: Track) -> None:
        for listener in list(self._listeners):
            listener(change, track)
