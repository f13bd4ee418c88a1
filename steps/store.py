"""Object store: one key layout, two backends (a local directory, or S3 through the minio SDK).

Steps address everything as ``(store, key)``: keys are ``/``-separated and relative to the store's root, so the
same code runs against ``./out`` on a laptop and ``s3://bucket/prefix`` on a cluster (MinIO).

Writes are atomic in both backends: a local write goes to a temporary file that is renamed into place, and an
S3 PUT only becomes visible once the whole object is stored. Readers therefore never see half an output, and a
step killed mid-write leaves nothing that looks done.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from steps.deadlines import S3_ATTEMPTS, S3_CONNECT_TIMEOUT_S, S3_READ_TIMEOUT_S

__all__ = ["Obj", "ObjectError", "Store", "LocalStore", "S3Store", "StoreConfigError", "StoreError", "open_store",
           "s3_settings_from_env"]


class StoreError(RuntimeError):
    """A store could not be reached or an object could not be read/written; the message names both."""


class StoreConfigError(StoreError):
    """The store is misconfigured (bad URL, missing bucket or folder, rejected credentials): retrying the same
    step cannot help, unlike an outage."""


class ObjectError(StoreError):
    """One object is unusable (missing, vanished, unreadable, not a regular file) while the store itself works.

    Steps fail that one input and go on; only a plain :class:`StoreError` (an outage) fails a step.
    """


@dataclass(frozen=True)
class Obj:
    key: str
    size: int
    version: str = ""  # what changes when the content changes: mtime (local) or ETag (S3)
    problem: str | None = None  # set when the entry was listed but cannot be read as an input, and why

    @property
    def fingerprint(self) -> str:
        return f"{self.size}:{self.version}"


class Store:
    """The interface both backends implement."""

    url: str

    def list(self, prefix: str = "") -> Iterator[Obj]:  # pragma: no cover - interface
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:  # pragma: no cover
        raise NotImplementedError

    def exists(self, key: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def local_copy(self, key: str) -> contextlib.AbstractContextManager[Path]:  # pragma: no cover - interface
        """A local file holding the object, valid inside the ``with`` block."""
        raise NotImplementedError

    def media_url(self, key: str) -> str:  # pragma: no cover - interface
        """Something ffmpeg can open without a full download: a path, or a loopback URL (never a presigned one)."""
        raise NotImplementedError

    def uri(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        self.write_bytes(key, text.encode("utf-8"), content_type)


def file_mode() -> int:
    """The mode a new file gets from ``open()`` under this process's umask (0644 under the usual 022).
    ``mkstemp`` creates 0600 whatever the umask: an atomic write chmods its temp file to this before the rename,
    so outputs are as readable as any other file the user writes. Read from /proc (``os.umask`` can only be
    read by setting it, which races with other threads); the umask dance where /proc has no Umask line."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _clean_key(key: str) -> str:
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StoreError(f"refusing key with '..': {key!r}")
    return "/".join(parts)


def key_problem(key: str) -> str | None:
    """Why a listed key cannot be an input, or None. Every store lists through this one rule."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "key has an empty, '.' or '..' path segment, so it has no safe output name"
    if any(p.startswith(".") for p in parts):
        return "hidden (a path segment starts with '.')"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    return None


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / _clean_key(key)

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def list(self, prefix: str = "") -> Iterator[Obj]:
        base = self.path(prefix) if prefix else self.root
        if base.is_file():
            st = base.stat()
            yield Obj(_clean_key(prefix), st.st_size, str(st.st_mtime_ns))
            return
        if not base.is_dir():
            if not self.root.is_dir():
                raise StoreConfigError(f"input directory does not exist: {self.root}")
            return
        found: list[Obj] = []
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            keep = []
            for d in dirnames:
                key = (here / d).relative_to(self.root).as_posix()
                if d.startswith("."):
                    found.append(Obj(key + "/", 0, problem="hidden directory: not searched"))
                elif (here / d).is_symlink():
                    found.append(Obj(key + "/", 0, problem="symbolic link to a directory: not followed"))
                else:
                    keep.append(d)
            dirnames[:] = keep
            found += [self._entry(here / n) for n in filenames]
        # Sorted by key, as S3 lists, so plans are the same whichever backend holds the audio.
        yield from sorted(found, key=lambda o: o.key)

    def _entry(self, p: Path) -> Obj:
        """One listed file; anything that is not a readable regular file says why in ``problem``."""
        key = p.relative_to(self.root).as_posix()
        problem = key_problem(key)
        try:
            st = p.stat()  # follows symlinks: a link to a good file is that file
        except OSError as e:
            # The link itself changes when it is repaired: its own mtime is the version.
            version = str(p.lstat().st_mtime_ns) if p.is_symlink() else ""
            if isinstance(e, FileNotFoundError) and p.is_symlink():
                return Obj(key, 0, version, problem=problem or f"broken symbolic link (points to {os.readlink(p)!r}, which does not exist)")
            return Obj(key, 0, version, problem=problem or f"cannot be read: {e.strerror}")
        if problem is None and not stat.S_ISREG(st.st_mode):
            problem = f"not a regular file ({_file_kind(st.st_mode)})"
        if problem is None and not os.access(p, os.R_OK):
            problem = "cannot be read: permission denied"
        return Obj(key, st.st_size, str(st.st_mtime_ns), problem=problem)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectError(f"object not found: {self.uri(key)}") from None
        except (PermissionError, IsADirectoryError) as e:
            raise ObjectError(f"cannot read {self.uri(key)}: {e.strerror}") from None

    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, file_mode())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        p = self.path(key)
        try:
            st = p.stat()
        except OSError:
            raise ObjectError(f"{key}: vanished (no longer at {p})") from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectError(f"{key}: not a regular file ({_file_kind(st.st_mode)})")
        if not os.access(p, os.R_OK):
            raise ObjectError(f"{key}: cannot be read: permission denied")
        yield p

    def media_url(self, key: str) -> str:
        return str(self.path(key))


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "directory"))
    return next((name for test, name in kinds if test(mode)), "special file")


_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound", "AccessDenied", "InvalidObjectState"})
_CONFIG_CODES = frozenset({"NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
                           "AccountProblem", "InvalidBucketName"})


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # scheme://host:port
    access_key: str | None
    secret_key: str | None
    region: str | None = None


def s3_settings_from_env(env: os._Environ[str] | dict[str, str] = os.environ) -> S3Settings:
    """S3 connection settings from the environment (in a cluster: a Secret mounted as env vars).

    ``KUBESCRIBE_S3_ENDPOINT`` (or ``AWS_ENDPOINT_URL``) is a URL such as ``http://minio.minio:9000``;
    credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
    """
    endpoint = env.get("KUBESCRIBE_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or "https://s3.amazonaws.com"
    return S3Settings(
        endpoint=endpoint,
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )


class S3Store(Store):
    """``s3://bucket/prefix`` through the minio SDK."""

    def __init__(self, url: str, settings: S3Settings | None = None):
        import urllib3
        from minio import Minio

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StoreConfigError(f"not an S3 URL (want s3://bucket/prefix): {url!r}")
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = _clean_key(parsed.path)
        self.settings = settings or s3_settings_from_env()
        ep = urlparse(self.settings.endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise StoreConfigError(f"S3 endpoint must look like http(s)://host:port, got {self.settings.endpoint!r}")
        # Few, short retries: an unreachable endpoint must fail in seconds with a clear message, not hang.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=S3_CONNECT_TIMEOUT_S, read=S3_READ_TIMEOUT_S),
            retries=urllib3.Retry(total=S3_ATTEMPTS - 1, backoff_factor=0.3, status_forcelist=[500, 502, 503, 504]),
            maxsize=16,
        )
        self.client = Minio(
            ep.netloc,
            access_key=self.settings.access_key,
            secret_key=self.settings.secret_key,
            secure=ep.scheme == "https",
            region=self.settings.region,
            http_client=http,
        )
        self._proxy = None

    def _key(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _fail(self, what: str, key: str, exc: Exception) -> StoreError:
        from minio.error import S3Error

        if isinstance(exc, S3Error):
            # The service answered: about this one object (a per-input problem), about the whole setup
            # (credentials, bucket: a configuration error), or it is struggling (an outage, worth a retry).
            kind = StoreError
            if exc.code in _CONFIG_CODES or (what == "list" and exc.code == "AccessDenied"):
                kind = StoreConfigError
            elif exc.code in _OBJECT_CODES:
                kind = ObjectError
            return kind(f"S3 {what} failed for {self.uri(key)}: {exc.code} ({exc.message})")
        reason = str(exc).split("(Caused by")[-1].strip(" ()'\"") or type(exc).__name__
        return StoreError(
            f"S3 endpoint {self.settings.endpoint} unreachable during {what} of {self.uri(key)}: {reason} "
            f"({self.describe_waits()})"
        )

    @staticmethod
    def describe_waits() -> str:
        return (f"each S3 call: {S3_ATTEMPTS} attempts, {S3_CONNECT_TIMEOUT_S:g} s to connect, "
                f"{S3_READ_TIMEOUT_S:g} s without an answer")

    def list(self, prefix: str = "") -> Iterator[Obj]:
        full = self._key(prefix)
        if full and not full.endswith("/"):
            full += "/"
        try:
            for o in self.client.list_objects(self.bucket, prefix=full or None, recursive=True):
                if o.is_dir:
                    continue
                rel = self._rel(o.object_name)
                yield Obj(rel, o.size or 0, (o.etag or "").strip('"'), problem=key_problem(rel))
        except Exception as e:  # noqa: BLE001 - translated into a clear StoreError
            raise self._fail("list", prefix, e) from None

    def read_bytes(self, key: str) -> bytes:
        try:
            resp = self.client.get_object(self.bucket, self._key(key))
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
        except Exception as e:  # noqa: BLE001
            raise self._fail("read", key, e) from None

    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        import io

        try:
            self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data), content_type=content_type)
        except Exception as e:  # noqa: BLE001
            raise self._fail("write", key, e) from None

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._key(key))
            return True
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise self._fail("stat", key, e) from None
        except Exception as e:  # noqa: BLE001
            raise self._fail("stat", key, e) from None

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="kubescribe-") as d:
            dest = Path(d) / Path(key).name
            try:
                self.client.fget_object(self.bucket, self._key(key), str(dest))
            except Exception as e:  # noqa: BLE001
                raise self._fail("download", key, e) from None
            yield dest

    def media_url(self, key: str) -> str:
        # A loopback URL that ranges into the object: no presigned (credential-bearing) URL in ffmpeg's argv.
        from steps.s3media import RangeProxy

        if self._proxy is None:
            self._proxy = RangeProxy(self)
        return self._proxy.url(key)

    def check(self) -> None:
        """Fail fast, with a clear message, if the endpoint or bucket is unusable."""
        try:
            ok = self.client.bucket_exists(self.bucket)
        except Exception as e:  # noqa: BLE001
            raise self._fail("bucket check", "", e) from None
        if not ok:
            raise StoreConfigError(f"S3 bucket {self.bucket!r} does not exist at {self.settings.endpoint}")


def open_store(url: str, s3: S3Settings | None = None) -> Store:
    """``s3://bucket/prefix`` → S3Store; anything else is a local directory."""
    if url.startswith("s3://"):
        return S3Store(url, s3)
    if "://" in url:
        raise StoreConfigError(f"unsupported store URL {url!r}: use a local directory or s3://bucket/prefix")
    return LocalStore(url)
