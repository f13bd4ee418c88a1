"""A loopback HTTP server that lets ffmpeg read S3 objects by byte range, without credentials in its argv.

ffmpeg probes a header by reading a few kilobytes and seeking; downloading each object to probe it would cost a
full transfer per file. A presigned URL would do, but it is a bearer credential and would sit in ffmpeg's
process arguments (``ps``, ``/proc/*/cmdline``) for anyone on the node to read. Instead ffmpeg opens
``http://127.0.0.1:<port>/<random token>/<key>`` and this proxy serves ``Range`` requests with the step's own
S3 client. It binds loopback only and answers nothing without the per-process token.
"""

from __future__ import annotations

import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from steps.store import S3Store

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024

__all__ = ["RangeProxy"]


class RangeProxy:
    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.token = secrets.token_urlsafe(24)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # ffmpeg's requests are not worth a log line each
                pass

            def do_HEAD(self) -> None:
                proxy._serve(self, body=False)

            def do_GET(self) -> None:
                proxy._serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="s3-range-proxy", daemon=True).start()

    def url(self, key: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{self.token}/{quote(key)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        token, _, raw_key = h.path.lstrip("/").partition("/")
        if not secrets.compare_digest(token, self.token):
            h.send_error(403)
            return
        store, key = self.store, unquote(raw_key)
        try:
            size = store.client.stat_object(store.bucket, store._key(key)).size or 0
        except Exception:  # noqa: BLE001 - ffmpeg only needs "not there"; the step reports the file
            h.send_error(404)
            return
        start, end, status = 0, size - 1, 200
        m = _RANGE.match(h.headers.get("Range", "") or "")
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size:
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        length = max(0, end - start + 1)
        h.send_response(status)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(length))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        h.end_headers()
        if not body or length == 0:
            return
        resp = None
        try:
            resp = store.client.get_object(store.bucket, store._key(key), offset=start, length=length)
            for chunk in resp.stream(_CHUNK):
                h.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # ffmpeg read the header it needed and hung up
        except Exception:  # noqa: BLE001 - mid-stream failure: drop the connection, ffmpeg sees a short read
            h.close_connection = True
        finally:
            if resp is not None:
                resp.close()
                resp.release_conn()
