"""MediaStream: the track set."""

from asyncrec import FrameTrack, MediaStream, SampleTrack, moving_pattern, sine_tone


def test_track_set_accessors() -> None:
    video = FrameTrack(moving_pattern(32, 32))
    audio = SampleTrack(sine_tone())
    stream = MediaStream([video, audio, video])
    assert stream.getTracks() == [video, audio]
    assert stream.getVideoTracks() == [video]
    assert stream.getAudioTracks() == [audio]
    assert stream.getTrackById(audio.id) is audio
    assert stream.getTrackById("nope") is None
    assert stream.id
    assert stream.id != MediaStream().id


def test_active_follows_the_tracks() -> None:
    video = FrameTrack(moving_pattern(32, 32))
    stream = MediaStream([video])
    assert stream.active
    video.stop()
    assert not stream.active
    assert not MediaStream().active


def test_add_and_remove_notify_listeners_once() -> None:
    video = FrameTrack(moving_pattern(32, 32))
    stream = MediaStream()
    changes: list[str] = []

    def listener(change: str, track: object) -> None:
        changes.append(change)

    stream._add_listener(listener)
    stream.addTrack(video)
    stream.addTrack(video)  # already there: nothing
    stream.removeTrack(video)
    stream.removeTrack(video)  # not there: nothing
    assert changes == ["addtrack", "removetrack"]
