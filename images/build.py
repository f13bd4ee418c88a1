#!/usr/bin/env python3
"""Build the kubescribe images from the committed Dockerfiles with podman, and record what was built.

    python3 images/build.py steps whisper           # what `make images` runs (needs root: podman, debootstrap)
    python3 images/build.py steps                   # what CI runs (`make images-steps`)
    python3 images/build.py whisper --torch cpu      # `make images-whisper`: CPU-only torch

Each image is built exactly from ``images/<variant>/Dockerfile`` with the repository root as the build context and
tagged with the name pods pull (``ghcr.io/kubescribe/<title>:<version>`` from the Dockerfile's labels; change the
registry with ``--registry``). Only build arguments are passed, never a changed Dockerfile.

Base image. The Dockerfiles default to a pinned ``python:<version>-slim-<debian>`` image. It is used when it is
already in local storage or can be pulled. Where no registry can be reached, a stand-in base is made from Debian
packages of the same Debian release (debootstrap: python3, python3-venv, ca-certificates, netbase, tzdata, with a
``python`` link, as the official image has) and passed as the ``PYTHON_IMAGE`` build argument. The script prints
which base it used and records it. The stand-in is kept in local storage and reused while its recipe is unchanged.

Package sources. pip inside the build uses this machine's pip sources (index URLs, find-links, CA bundle) through
``podman build -v`` mounts over ``/root`` (the build user's home) that exist only while a RUN step runs: a generated
``/root/.config/pip/pip.conf``, a copy of the host's CA bundle and the local package folders, read-only. Nothing of
them is committed to an image (tests/test_images_run.py checks). Versions come from
``images/constraints.txt``.

Facts. After a build, ``build/images/facts.json`` records each image's id, size, layers, user, entrypoint, env,
labels, Python and package versions, torch version and the baked weights with their sha256 (read by running the
image), with the build time and the base it used. ``tests/test_images_run.py`` checks them against the chart and
images/README.md, and runs the images as pods would: ``podman run --read-only`` with only /tmp writable (a tmpfs,
as the pods' emptyDir), all capabilities dropped, as the image's numeric user.

Running images here. A plain ``podman run`` is refused by this sandbox (crun cannot set the default rlimits and
does not support its hybrid cgroups); runc with explicit ``--ulimit`` values works, so runs use runc where it is
installed (``KUBESCRIBE_OCI_RUNTIME`` overrides). Builds use ``--isolation chroot`` (``KUBESCRIBE_BUILD_ISOLATION``).
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
VARIANTS = ("steps", "whisper")
DEFAULT_OUT = ROOT / "build" / "images"
DEFAULT_REGISTRY = "ghcr.io/kubescribe"
STANDIN_REPO = "localhost/kubescribe-python-standin"
# What the stand-in base holds besides Debian's minimal base: what python:*-slim-* has that the images use.
STANDIN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase", "tzdata")
STANDIN_RECIPE_VERSION = "1"  # bump when the stand-in recipe below changes: a stored stand-in is then rebuilt
BUILD_DIR_IN_HOME = ".kubescribe-build"  # under the build's /root mount: the host CA bundle and local package folders
# pip options carried from this machine into the build (others, such as a host-wide `constraint`, are not).
PIP_KEYS = ("index-url", "extra-index-url", "find-links", "cert", "trusted-host", "timeout", "default-timeout",
            "retries", "proxy")
BUILD_TIMEOUT_S = {"steps": 900, "whisper": 3600}  # an upper bound on one `podman build`


class BuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


def _run(argv: list[str], *, timeout: float, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip()[-2000:]
        raise BuildError(f"{shlex.join(argv[:4])} ... exited {proc.returncode}: {said}")
    return proc


# --- what the Dockerfiles say -------------------------------------------------------------------------------------


def dockerfile(variant: str) -> Path:
    return IMAGES / variant / "Dockerfile"


def dockerfile_args(variant: str) -> dict[str, str]:
    """``ARG NAME=default`` lines (global and per stage); a later line does not override an earlier default."""
    args: dict[str, str] = {}
    for m in re.finditer(r"^ARG\s+(\w+)(?:=(\S*))?\s*$", dockerfile(variant).read_text(), re.M):
        args.setdefault(m.group(1), m.group(2) or "")
    return args


def dockerfile_label(variant: str, key: str) -> str:
    m = re.search(rf'{re.escape(key)}="([^"]*)"', dockerfile(variant).read_text())
    if not m:
        raise BuildError(f"{dockerfile(variant)} has no LABEL {key}")
    return m.group(1)


def source_digest(variant: str) -> str:
    """sha256 over what the build reads from the context: the Dockerfile and every file its COPY lines name
    (without __pycache__, as Dockerfile.dockerignore says). Tells whether a built image is this checkout's."""
    paths = {dockerfile(variant)}
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile(variant).read_text(), re.M):
        words = line.split()
        if words[0].startswith("--from"):
            continue
        for src in words[:-1]:
            top = ROOT / src
            paths |= {p for p in top.rglob("*") if p.is_file()} if top.is_dir() else {top}
    h = hashlib.sha256()
    for path in sorted(p for p in paths if "__pycache__" not in p.parts and p.suffix != ".pyc"):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def image_ref(variant: str, registry: str = DEFAULT_REGISTRY) -> str:
    title = dockerfile_label(variant, "org.opencontainers.image.title")
    version = dockerfile_label(variant, "org.opencontainers.image.version")
    return f"{registry.rstrip('/')}/{title}:{version}"


def qualified(ref: str) -> str:
    """Docker's short names (``python:3.11``) in full, as podman wants them without a search-registry list."""
    first = ref.split("/")[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{ref}"
    return ref


# --- running images as the pods do --------------------------------------------------------------------------------


def oci_runtime() -> str | None:
    """runc where installed: crun (podman's default) cannot start containers in this sandbox."""
    env = os.environ.get("KUBESCRIBE_OCI_RUNTIME")
    if env:
        return None if env == "default" else env
    return "runc" if shutil.which("runc") else None


def podman_run_argv(image: str, args: list[str], *, entrypoint: str | None = None, volumes: list[str] = (),
                    env: dict[str, str] | None = None, network: str = "none", user: str | None = None,
                    tmp_size: str = "2g", name: str | None = None) -> list[str]:
    """``podman run`` as a restricted pod runs the image: read-only root filesystem, a tmpfs at /tmp only (the pods'
    emptyDir), every capability dropped, no privilege escalation, the image's own USER unless ``user`` is given."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    argv = ["podman"]
    runtime = oci_runtime()
    if runtime:
        argv += ["--runtime", runtime]
    argv += ["run", "--rm", "--read-only", "--read-only-tmpfs=false", "--tmpfs", f"/tmp:rw,mode=1777,size={tmp_size}",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", network,
             # explicit limits: podman's defaults (nproc = the host's) are refused by this sandbox's rlimit policy
             "--ulimit", f"nofile={soft}:{hard}", "--ulimit", "nproc=4096:4096", "--pull", "never"]
    if name:
        argv += ["--name", name]
    if user:
        argv += ["--user", user]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    for v in volumes:
        argv += ["-v", v]
    for k, val in (env or {}).items():
        argv += ["-e", f"{k}={val}"]
    return argv + [image, *args]


_PROBE = r"""
import importlib.metadata as md, json, os, platform, sys
out = {"uid": os.getuid(), "gid": os.getgid(), "python": platform.python_version(),
       "python_executable": os.path.realpath(sys.executable),
       "packages": {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions()},
       "kubescribe": md.version("kubescribe")}
try:
    import torch
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    import whisper
    out["whisper"] = md.version("openai-whisper")
except ImportError:
    out["torch"] = None
cache = os.environ.get("KUBESCRIBE_MODEL_CACHE")
if cache and os.path.isdir(cache):
    models = []
    baked = os.path.join(cache, "BAKED")
    if os.path.exists(baked):
        for line in open(baked):
            name, path, digest = line.rstrip("\n").split("\t")
            models.append({"name": name, "path": path, "sha256": digest, "bytes": os.path.getsize(path)})
    out["models"] = models
    out["model_cache"] = cache
    out["model_cache_files"] = sorted(os.listdir(cache))
print(json.dumps(out))
"""


def probe(image: str) -> dict:
    proc = _run(podman_run_argv(image, ["-c", _PROBE], entrypoint="python"), timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- pip sources for the build ------------------------------------------------------------------------------------


def host_pip_options() -> dict[str, str]:
    """This machine's effective pip options (config files and PIP_* variables) that say where packages come from."""
    opts: dict[str, str] = {}
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60)
        lines = proc.stdout.splitlines() if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        lines = []
    by_section: dict[str, dict[str, str]] = {}
    for line in lines:
        m = re.match(r"^([^.]+|:env:)\.([\w-]+)='(.*)'$", line)
        if m:
            by_section.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    for section in ("global", "install", ":env:"):  # pip's precedence for `pip install`, lowest first
        opts.update({k: v for k, v in by_section.get(section, {}).items() if k in PIP_KEYS})
    for key in PIP_KEYS:  # PIP_* variables win, whether or not `pip config` showed them
        val = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if val:
            opts[key] = val
    if "cert" not in opts:
        for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            if os.environ.get(var) and Path(os.environ[var]).is_file():
                opts["cert"] = os.environ[var]
                break
    return opts


def _local_dir(location: str) -> Path | None:
    if location.startswith("file:"):
        path = Path(unquote(urlparse(location).path))
    elif "://" in location:
        return None
    else:
        path = Path(location)
    if not path.exists():
        return None
    # a PEP 503 tree links ../../files/...: mount the folder above `simple`
    return path.parent if path.name == "simple" else path


def pip_build_mounts(workdir: Path) -> tuple[list[str], list[str], list[Path]]:
    """``-v`` arguments that give RUN steps this machine's pip sources, a description of them for the log, and the
    local folders among them.

    Everything is mounted over ``/root``, the build user's home, which every Debian-based image already has: pip reads
    ``/root/.config/pip/pip.conf``, the CA bundle and local package folders lie beside it. A mount over a path the
    image lacks would leave an empty stub of it in the layer (buildah 1.28 does); over ``/root`` nothing is left, and
    whatever a RUN step writes to its home stays out of the image too."""
    opts = host_pip_options()
    conf = configparser.ConfigParser()
    conf["global"] = {}
    said: list[str] = []
    home = workdir / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    stage = home / BUILD_DIR_IN_HOME
    stage.mkdir()
    inner = f"/root/{BUILD_DIR_IN_HOME}"
    if opts.get("cert"):
        cert = Path(opts.pop("cert")).resolve()
        if cert.is_file():
            shutil.copyfile(cert, stage / "ca.crt")  # a temporary copy, mounted for RUN steps only
            conf["global"]["cert"] = f"{inner}/ca.crt"
            said.append(f"CA bundle {cert}")
    local: dict[Path, str] = {}
    for key, value in opts.items():
        locations = value.split()
        if key in ("index-url", "extra-index-url", "find-links"):
            rewritten = []
            for loc in locations:
                d = _local_dir(loc)
                if d is None:
                    rewritten.append(loc)
                    continue
                d = d.resolve()
                where = local.setdefault(d, f"{inner}/src{len(local)}")
                (stage / Path(where).name).mkdir(exist_ok=True)
                src = Path(unquote(urlparse(loc).path)).resolve() if loc.startswith("file:") else Path(loc).resolve()
                inside = where + str(src)[len(str(d)):]
                rewritten.append(f"file://{inside}" if loc.startswith("file:") else inside)
            said.append(f"{key} {value}")
            value = " ".join(rewritten)
        conf["global"][key] = value
    if not conf["global"]:
        return [], ["PyPI, the base image's CA bundle"], []
    with (home / ".config" / "pip" / "pip.conf").open("w") as f:
        conf.write(f)
    for p in [home, *home.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    mounts = ["-v", f"{home}:/root"]
    for d, where in local.items():
        mounts += ["-v", f"{d}:{where}:ro"]
    return mounts, said, sorted(local)


def torch_cpu_args(declared_version: str, local_dirs: list[Path]) -> tuple[list[str], str]:
    """Build arguments for the CPU-only torch of the whisper image (images/README.md: TORCH_VERSION=X+cpu from the
    PyTorch CPU index), and where the wheel comes from. A copy in this machine's local pip folders is used as is:
    then no index is named (download.pytorch.org may be unreachable where only PyPI is)."""
    version = declared_version.split("+")[0] + "+cpu"
    for d in local_dirs:
        for wheel in d.rglob(f"torch-{version}-*.whl"):
            return [f"TORCH_VERSION={version}"], f"torch {version} from this machine's pip sources ({wheel})"
    index = "https://download.pytorch.org/whl/cpu"
    return [f"TORCH_VERSION={version}", f"TORCH_INDEX_URL={index}"], f"torch {version} from {index}"


# --- the base image -----------------------------------------------------------------------------------------------


def image_exists(ref: str) -> bool:
    return _run(["podman", "image", "exists", ref], timeout=60, check=False).returncode == 0


def inspect(ref: str) -> dict:
    return json.loads(_run(["podman", "image", "inspect", ref], timeout=60).stdout)[0]


def debian_mirror() -> str:
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s", text, re.M):
            if m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1)
    return "http://deb.debian.org/debian"


def _standin_spec(pinned: str) -> tuple[str, str]:
    """(python major.minor, Debian suite) that a ``python:3.11.13-slim-bookworm`` tag names."""
    tag = pinned.split("@")[0].rsplit(":", 1)[-1]
    m = re.match(r"^(\d+\.\d+)(?:\.\d+)?-(?:slim-)?([a-z]+)$", tag)
    if not m:
        raise BuildError(f"cannot tell the Python version and Debian release of base {pinned!r} (tag {tag!r})")
    return m.group(1), m.group(2)


def build_standin(pinned: str, *, rebuild: bool, mirror: str) -> tuple[str, dict]:
    pyver, suite = _standin_spec(pinned)
    recipe = json.dumps({"v": STANDIN_RECIPE_VERSION, "suite": suite, "python": pyver, "mirror": mirror,
                         "packages": STANDIN_PACKAGES}, sort_keys=True)
    recipe_id = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    ref = f"{STANDIN_REPO}:{pyver}-{suite}"
    facts = {"kind": "stand-in", "ref": ref, "replaces": pinned, "suite": suite, "mirror": mirror,
             "packages": list(STANDIN_PACKAGES), "recipe": recipe_id}
    info = inspect(ref) if not rebuild and image_exists(ref) else {}
    if (info.get("Labels") or {}).get("io.kubescribe.standin.recipe") == recipe_id:
        facts.update(json.loads(info["Labels"]["io.kubescribe.standin.facts"]))
        facts.update(build_seconds=None, reused=True)
        return ref, facts
    if not shutil.which("debootstrap"):
        raise BuildError("the pinned base cannot be pulled and debootstrap is not installed: "
                         "apt-get install debootstrap")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kubescribe-standin-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {suite} from {mirror} ({', '.join(STANDIN_PACKAGES)}) ...")
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}", suite,
                               str(rootfs), mirror], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise BuildError(f"debootstrap failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}")
        # As debian:*-slim (python:*-slim's base) does: no docs, man pages, translations or apt lists and archives.
        for sub in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
                    "var/cache/apt", "var/log", "var/cache/debconf/templates.dat-old"):
            p = rootfs / sub
            if p.is_dir():
                shutil.rmtree(p)
                p.mkdir()
            elif p.exists():
                p.unlink()
        # The official image's `python` (the Dockerfiles call it); Debian only has python3.
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        got = subprocess.run(["chroot", str(rootfs), "python", "-c", "import platform; print(platform.python_version())"
                              ], capture_output=True, text=True, timeout=60).stdout.strip()
        if not got.startswith(pyver + "."):
            raise BuildError(f"Debian {suite} has Python {got}, the pinned base {pinned} has {pyver}: no stand-in")
        versions = subprocess.run(["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package}=${Version}\n",
                                   *STANDIN_PACKAGES, f"python{pyver}"], capture_output=True, text=True,
                                  timeout=60).stdout.split()
        facts.update(python=got, debian_packages=dict(v.split("=", 1) for v in versions),
                     debian_version=(rootfs / "etc/debian_version").read_text().strip())
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
                   'CMD ["python3"]', f"LABEL io.kubescribe.standin.recipe={recipe_id}",
                   "LABEL io.kubescribe.standin.facts=" + json.dumps(
                       {k: facts[k] for k in ("python", "debian_packages", "debian_version")}, separators=(",", ":"))]
        argv = ["podman", "import"]
        for c in changes:
            argv += ["--change", c]
        imp = subprocess.run([*argv, "-", ref], stdin=tar.stdout, capture_output=True, text=True, timeout=600)
        tar.stdout.close()
        tar.wait(timeout=60)
        if imp.returncode != 0 or tar.returncode != 0:
            raise BuildError(f"podman import failed: {imp.stderr[-2000:]}")
    facts.update(build_seconds=round(time.monotonic() - t0, 1), reused=False)
    return ref, facts


def resolve_base(pinned: str, mode: str, *, rebuild_standin: bool, mirror: str) -> tuple[str, dict]:
    full = qualified(pinned)
    if mode in ("auto", "pull"):
        if image_exists(full):
            return full, {"kind": "pinned", "ref": full, "pulled": False}
        log(f"pulling the pinned base {full} ...")
        proc = _run(["podman", "pull", "-q", full], timeout=900, check=False)
        if proc.returncode == 0:
            return full, {"kind": "pinned", "ref": full, "pulled": True}
        reason = (proc.stderr.strip().splitlines() or ["pull failed"])[-1]
        if mode == "pull":
            raise BuildError(f"cannot pull {full}: {reason}")
        log(f"the pinned base cannot be pulled ({reason[:200]})")
    ref, facts = build_standin(pinned, rebuild=rebuild_standin, mirror=mirror)
    return ref, facts


# --- building -----------------------------------------------------------------------------------------------------


def build(variant: str, base: str, *, out: Path, registry: str, build_args: list[str], no_cache: bool,
          isolation: str, pip_mounts: list[str]) -> dict:
    ref = image_ref(variant, registry)
    sources = source_digest(variant)
    args = [f"PYTHON_IMAGE={base}", *build_args]
    argv = ["podman", "build", "--isolation", isolation, "-f", str(dockerfile(variant)), "-t", ref, "--pull=never"]
    for a in args:
        argv += ["--build-arg", a]
    if no_cache:
        argv.append("--no-cache")
    argv += [*pip_mounts, str(ROOT)]
    log_path = out / f"{variant}-build.log"
    shown = log_path.relative_to(ROOT) if log_path.is_relative_to(ROOT) else log_path
    log(f"building {ref} from {dockerfile(variant).relative_to(ROOT)} (log: {shown})")
    t0 = time.monotonic()
    with log_path.open("w") as f:
        f.write("$ " + shlex.join(argv) + "\n")
        f.flush()
        try:
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S[variant],
                                cwd=ROOT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = round(time.monotonic() - t0, 1)
    if rc != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
        raise BuildError(f"building {variant} failed ({rc}) after {seconds}s; last lines of {log_path}:\n{tail}")
    text = log_path.read_text()
    info = inspect(ref)
    base_info = inspect(base)
    cfg = info.get("Config", {})
    facts = {
        "ref": ref, "id": info["Id"], "digest": info.get("Digest"), "created": info.get("Created"),
        "dockerfile": str(dockerfile(variant).relative_to(ROOT)), "build_args": args, "source_digest": sources,
        "size_bytes": info["Size"], "size_mb": round(info["Size"] / 1e6),
        "layers": len(info["RootFS"]["Layers"]), "base_layers": len(base_info["RootFS"]["Layers"]),
        "user": cfg.get("User"), "entrypoint": cfg.get("Entrypoint"), "cmd": cfg.get("Cmd"),
        "workdir": cfg.get("WorkingDir"), "env": dict(e.split("=", 1) for e in cfg.get("Env") or []),
        "labels": info.get("Labels") or {},
        "build_seconds": seconds, "no_cache": no_cache,
        "build_mounts": [m.split(":")[1] for m in pip_mounts[1::2]],
        "steps_cached": text.count("Using cache"),
        "steps_run": len(re.findall(r"^\[\d+/\d+\] STEP|^STEP ", text, re.M)),
    }
    facts.update(probe(ref))
    return facts


def engine_facts(isolation: str) -> dict:
    version = _run(["podman", "--version"], timeout=30).stdout.strip()
    return {"engine": version, "isolation": isolation, "run_runtime": oci_runtime() or "podman default"}


def write_facts(path: Path, update: dict) -> dict:
    facts = {}
    if path.exists():
        try:
            facts = json.loads(path.read_text())
        except ValueError:
            facts = {}
    images = facts.get("images", {})
    images.update(update.pop("images"))
    facts.update(update, images=images, schema=1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return facts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See images/README.md.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", metavar="VARIANT", help="steps and/or whisper (default: both)")
    p.add_argument("--base", choices=["auto", "pull", "stand-in"], default="auto",
                   help="auto: the pinned base if local or pullable, else a stand-in from Debian packages")
    p.add_argument("--rebuild-base", action="store_true", help="make the stand-in base again even if stored")
    p.add_argument("--mirror", default=None, help="Debian mirror for the stand-in (default: this machine's apt source)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V",
                   help="extra build argument, repeatable (e.g. TORCH_VERSION=2.13.0+cpu); applies to every variant "
                        "that declares it")
    p.add_argument("--torch", choices=["dockerfile", "cpu"], default="dockerfile",
                   help="whisper image: dockerfile = the Dockerfile's torch (CUDA wheels from PyPI); cpu = the "
                        "CPU-only build of the same version (no CUDA libraries; what runs on CPU nodes and here)")
    p.add_argument("--registry", default=DEFAULT_REGISTRY,
                   help=f"registry/org of the tags (default {DEFAULT_REGISTRY})")
    p.add_argument("--no-cache", action="store_true", help="build every step again (for timing a cold build)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where facts.json and build logs go")
    p.add_argument("--no-pip-config", action="store_true", help="do not give the build this machine's pip sources")
    a = p.parse_args(argv)
    unknown = set(a.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)}: choose from {', '.join(VARIANTS)}")
    variants = [v for v in VARIANTS if v in (a.variants or VARIANTS)]
    isolation = os.environ.get("KUBESCRIBE_BUILD_ISOLATION", "chroot")
    for tool in ("podman",):
        if not shutil.which(tool):
            print(f"error: {tool} is not installed (Debian: apt-get install podman runc debootstrap)", file=sys.stderr)
            return 2
    a.out.mkdir(parents=True, exist_ok=True)
    pinned = {dockerfile_args(v)["PYTHON_IMAGE"] for v in variants}
    if len(pinned) != 1:
        print(f"error: the Dockerfiles pin different bases: {sorted(pinned)}", file=sys.stderr)
        return 2
    pinned_ref = pinned.pop()
    t0 = time.monotonic()
    try:
        base, base_facts = resolve_base(pinned_ref, a.base, rebuild_standin=a.rebuild_base,
                                        mirror=a.mirror or debian_mirror())
        info = inspect(base)
        base_facts.update(id=info["Id"], size_bytes=info["Size"], layers=len(info["RootFS"]["Layers"]))
        if base_facts["kind"] == "stand-in":
            how = "reused from local storage" if base_facts.get("reused") else f"made in {base_facts['build_seconds']}s"
            log(f"base: STAND-IN {base} (Debian {base_facts.get('debian_version')} python3 {base_facts.get('python')}, "
                f"{how}), passed as PYTHON_IMAGE in place of {pinned_ref}")
        else:
            log(f"base: the pinned {base}")
        with tempfile.TemporaryDirectory(prefix="kubescribe-pip-") as tmp:
            mounts, said, local = (([], ["PyPI (--no-pip-config)"], []) if a.no_pip_config
                                   else pip_build_mounts(Path(tmp)))
            log("pip sources in the build: " + "; ".join(said))
            built = {}
            for v in variants:
                declared = dockerfile_args(v)
                extra = [ba for ba in a.build_arg if ba.split("=", 1)[0] in declared]
                if v == "whisper" and a.torch == "cpu":
                    given = dict(ba.split("=", 1) for ba in extra)
                    cpu_args, where = torch_cpu_args(given.get("TORCH_VERSION", declared["TORCH_VERSION"]), local)
                    extra = [ba for ba in extra if ba.split("=", 1)[0] not in ("TORCH_VERSION", "TORCH_INDEX_URL")]
                    extra += cpu_args
                    log(f"whisper image with CPU-only torch: {where}")
                built[v] = build(v, base, out=a.out, registry=a.registry, build_args=extra, no_cache=a.no_cache,
                                 isolation=isolation, pip_mounts=mounts)
                f = built[v]
                log(f"built {f['ref']}: {f['size_mb']} MB, {f['layers']} layers, user {f['user']}, "
                    f"python {f['python']}" + (f", torch {f['torch']}" if f.get("torch") else "")
                    + f", in {f['build_seconds']}s ({f['steps_cached']} cached steps)")
    except (BuildError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    facts = write_facts(a.out / "facts.json", {"base": base_facts, "pinned_base": pinned_ref,
                                                "tool": engine_facts(isolation), "images": built})
    log(f"facts: {a.out / 'facts.json'} ({', '.join(sorted(facts['images']))}); total {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
