"""Paths and helpers shared by the test modules (fixtures and hooks live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

#: The repository root (steps/, workflows/, charts/, samples/).
ROOT = Path(__file__).resolve().parents[1]

# --- Pipeline (store, plan, transcribe, end-to-end) ------------------------------

FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = ROOT / "samples"
JFK_REFERENCE = (
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
)


def make_bucket(endpoint: str, name: str) -> None:
    """A new, empty bucket. The S3 server lives for the whole session, so a test that reused another test's bucket
    would see that test's objects (CI once failed on exactly that): a name already taken is a test bug."""
    from minio import Minio

    client = Minio(endpoint.split("://", 1)[1], access_key="test-access", secret_key="test-secret", secure=False)
    assert not client.bucket_exists(name), f"bucket {name!r} is already used by another test: pick a unique name"
    client.make_bucket(name)
