"""Both store backends against real storage: a temp directory, and a real S3-protocol server (moto)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from steps.store import LocalStore, ObjectError, S3Settings, S3Store, StoreError, open_store
from tests.support import make_bucket

pytestmark = pytest.mark.integration


def test_local_store_round_trip_and_listing(tmp_path):
    store = LocalStore(tmp_path)
    store.write_text("a/b.txt", "hello")
    store.write_bytes("c.bin", b"\x00\x01")
    store.write_text(".kubescribe/hidden.json", "{}")
    assert store.read_text("a/b.txt") == "hello"
    assert store.exists("c.bin") and not store.exists("missing")
    listed = [(o.key, o.size, o.problem) for o in store.list()]
    # dot-dirs (our own metadata among them) are not searched, and say so
    assert listed == [(".kubescribe/", 0, "hidden directory: not searched"), ("a/b.txt", 5, None), ("c.bin", 2, None)]
    assert [o.key for o in store.list("a")] == ["a/b.txt"]


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    store.write_text("x.txt", "old")

    def crash(fd):  # the process dies after writing the bytes, before the rename
        raise OSError("disk gone")

    monkeypatch.setattr("steps.store.os.fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.write_text("x.txt", "new")
    assert store.read_text("x.txt") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_keys_cannot_escape_the_root(tmp_path):
    with pytest.raises(StoreError, match=r"\.\."):
        LocalStore(tmp_path).write_text("../escape.txt", "x")


def test_missing_object_error_names_it(tmp_path):
    with pytest.raises(StoreError, match="nope.txt"):
        LocalStore(tmp_path).read_text("nope.txt")


def test_open_store_rejects_unknown_schemes():
    with pytest.raises(StoreError, match="gs://bucket"):
        open_store("gs://bucket/x")


def test_s3_store_against_a_real_s3_server(s3_env):
    make_bucket(s3_env, "kubescribe-test")
    store = open_store("s3://kubescribe-test/run1")
    assert isinstance(store, S3Store)
    store.check()
    store.write_text("transcripts/a.txt", "hello")
    store.write_bytes("audio/b.wav", b"RIFF....")
    store.write_text(".kubescribe/marker.json", "{}")
    assert store.read_text("transcripts/a.txt") == "hello"
    assert store.exists("audio/b.wav") and not store.exists("audio/none.wav")
    listed = {o.key: o for o in store.list()}
    assert set(listed) == {"transcripts/a.txt", "audio/b.wav", ".kubescribe/marker.json"}
    assert listed[".kubescribe/marker.json"].problem.startswith("hidden")
    assert listed["audio/b.wav"].size == 8 and listed["audio/b.wav"].version  # ETag
    assert [o.key for o in store.list("audio")] == ["audio/b.wav"]
    with store.local_copy("audio/b.wav") as path:
        assert path.read_bytes() == b"RIFF...."
    # ffmpeg reads S3 inputs through a loopback range proxy: no credentials or presigned query in its argv
    url = store.media_url("audio/b.wav")
    assert url.startswith("http://127.0.0.1:") and "X-Amz" not in url and "test-secret" not in url
    assert httpx.get(url).content == b"RIFF...."
    assert httpx.get(url, headers={"Range": "bytes=2-5"}).content == b"FF.."
    assert httpx.get(url.replace(store._proxy.token, "wrong-token")).status_code == 403
    with pytest.raises(StoreError, match="NoSuchKey"):
        store.read_text("transcripts/none.txt")


def test_s3_missing_bucket_is_a_clear_error(s3_env):
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x").check()


def test_s3_unreachable_endpoint_fails_fast_with_a_clear_message():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = S3Store("s3://bucket/p", S3Settings(endpoint=f"http://127.0.0.1:{port}", access_key="a", secret_key="b"))
    t0 = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.write_text("k.txt", "x")
    assert time.monotonic() - t0 < 15
    msg = str(err.value)
    assert f"127.0.0.1:{port}" in msg and "unreachable" in msg and "s3://bucket/p/k.txt" in msg
    assert "Traceback" not in msg


def test_s3_endpoint_that_accepts_and_never_answers_fails_within_its_bounds(monkeypatch):
    """Every S3 call has a bound (steps/deadlines.py S3_*): attempts x (connect + silence). Shrunk here so the test
    is quick; the point is that the call returns, with an error naming the endpoint and the bound it hit."""
    import threading

    monkeypatch.setattr("steps.store.S3_READ_TIMEOUT_S", 0.5)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts (the kernel completes the handshake) and never answers
    port = listener.getsockname()[1]
    store = S3Store("s3://bucket/p", S3Settings(endpoint=f"http://127.0.0.1:{port}", access_key="a", secret_key="b"))
    outcome: list[BaseException] = []
    call = threading.Thread(target=lambda: outcome.append(_raised(lambda: store.read_text("k.txt"))), daemon=True)
    try:
        call.start()
        call.join(60)
        assert not call.is_alive(), "an S3 call to a silent endpoint did not return"
    finally:
        listener.close()
    (err,) = outcome
    assert isinstance(err, StoreError) and not isinstance(err, ObjectError)
    msg = str(err)
    assert f"127.0.0.1:{port}" in msg and "s3://bucket/p/k.txt" in msg
    assert "each S3 call: 3 attempts, 5 s to connect, 0.5 s without an answer" in msg


def _raised(fn) -> BaseException | None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the test inspects it
        return e
    return None
