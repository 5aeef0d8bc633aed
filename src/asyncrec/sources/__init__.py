"""Sources of tracks: generated frames (devices and media files come later)."""

from ._generated import FrameTrack, SampleTrack, moving_pattern, sine_tone

__all__ = ["FrameTrack", "SampleTrack", "moving_pattern", "sine_tone"]
