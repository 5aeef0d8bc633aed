"""The public surface: everything users need is importable from ``asyncrec``, sorted."""

import asyncrec


def test_all_is_sorted_and_complete() -> None:
    assert asyncrec.__all__ == sorted(asyncrec.__all__)
    for name in asyncrec.__all__:
        assert hasattr(asyncrec, name), name
    subpackages = {"cli", "sources", "whip"}
    public = {name for name in dir(asyncrec) if not name.startswith("_") and name not in subpackages}
    assert public == set(asyncrec.__all__)


def test_api_md_names_exist() -> None:
    for name in (
        "MediaStream",
        "MediaRecorder",
        "BlobEvent",
        "ErrorEvent",
        "AsyncrecError",
        "InvalidStateError",
        "NotSupportedError",
        "InvalidModificationError",
        "EncodingError",
        "SecurityError",
        "UnknownError",
    ):
        assert name in asyncrec.__all__
    errors = [asyncrec.InvalidStateError, asyncrec.NotSupportedError, asyncrec.EncodingError, asyncrec.UnknownError]
    assert all(issubclass(e, asyncrec.AsyncrecError) for e in errors)
    assert [e.name for e in errors] == ["InvalidStateError", "NotSupportedError", "EncodingError", "UnknownError"]
