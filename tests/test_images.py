"""The container images, checked offline: the Dockerfiles are parsed and held against the rendered WorkflowTemplate,
the settings defaults and the package; the build-time model bake and the CPU image's import set are exercised for
real with the code they would run. The built images themselves are run in tests/test_images_run.py."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.images_support import DOCKERFILES, IMAGES, VARIANTS, pairs, parse_dockerfile
from workflows.pipeline import build_workflow_template
from workflows.settings import PipelineSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed), f"not exec form: {value}"
    return parsed


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _image_of_variant() -> dict[str, str]:
    s = PipelineSettings()
    return {"whisper": s.whisper_image, "steps": s.steps_image}


# --- structure ----------------------------------------------------------------------------------------------------


def test_parser_reads_a_known_dockerfile(tmp_path: Path) -> None:
    p = tmp_path / "Dockerfile"
    p.write_text(
        "# syntax=docker/dockerfile:1\nARG BASE=python:3.11.13-slim\nFROM ${BASE} AS b\nENV A=1 \\\n  B=\"x y\"\n"
        "FROM b\nENV C=$A\nUSER 10:10\nENTRYPOINT [\"run\"]\n"
    )
    d = parse_dockerfile(p)
    assert [s.base for s in d.stages] == ["python:3.11.13-slim", "b"]
    assert d.final.env == {"A": "1", "B": "x y", "C": "1"}
    assert d.final.values("USER") == ["10:10"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_from_is_pinned(variant: str) -> None:
    d = DOCKERFILES[variant]
    stage_names = {s.name for s in d.stages if s.name}
    for stage in d.stages:
        ref = stage.base
        if ref in stage_names:
            continue
        assert "$" not in ref, f"{d.path}: FROM {ref} depends on an ARG without a default"
        if "@sha256:" in ref:
            assert re.search(r"@sha256:[0-9a-f]{64}$", ref), f"{d.path}: malformed digest in {ref}"
            continue
        name, _, tag = ref.rpartition(":")
        assert name and "/" not in tag, f"{d.path}: FROM {ref} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{d.path}: FROM {ref} is not pinned to a version"
    assert "sha256" in d.path.read_text(), f"{d.path}: explain how to pin the digest"


@pytest.mark.parametrize("variant", VARIANTS)
def test_runs_as_numeric_non_root_user_matching_the_template(variant: str) -> None:
    users = DOCKERFILES[variant].final.values("USER")
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The template pins no IDs by default (OpenShift's restricted-v2 SCC assigns its own), so the image's numeric
    # USER is what runAsNonRoot verifies elsewhere; the opt-in IDs, when used with the image's user, match it.
    pod = build_workflow_template().to_dict()["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod)
    pinned = build_workflow_template(PipelineSettings(run_as_user=int(uid), run_as_group=int(gid or uid),
                                                      fs_group=int(gid or uid))).to_dict()["spec"]["securityContext"]
    assert (pinned["runAsUser"], pinned["runAsGroup"]) == (int(uid), int(gid or uid))


def test_entrypoint_is_the_templates_command() -> None:
    images = _image_of_variant()
    templates = [t for t in build_workflow_template().to_dict()["spec"]["templates"] if "container" in t]
    assert {t["name"] for t in templates} == {"plan", "transcribe", "summarize", "report"}
    by_variant = {v: [t for t in templates if t["container"]["image"] == images[v]] for v in VARIANTS}
    assert [t["name"] for t in by_variant["whisper"]] == ["transcribe"]
    assert sorted(t["name"] for t in by_variant["steps"]) == ["plan", "report", "summarize"]
    for variant, ts in by_variant.items():
        entrypoint = _exec_form(DOCKERFILES[variant].final.values("ENTRYPOINT")[-1])
        for t in ts:
            assert t["container"]["command"] == entrypoint, f"{variant}: {t['name']} runs {t['container']['command']}"
            assert t["container"]["args"][0] == t["name"], "the step subcommand comes first in args"
        assert entrypoint[0] in PYPROJECT["project"]["scripts"], "the entrypoint must be a console script of the package"
        assert "/opt/venv/bin" in DOCKERFILES[variant].final.env["PATH"].split(":")


@pytest.mark.parametrize("variant", VARIANTS)
def test_read_only_root_filesystem_friendly(variant: str) -> None:
    env = DOCKERFILES[variant].final.env
    assert env["HOME"] == "/tmp"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    for key in ("XDG_CACHE_HOME", "TORCH_HOME", "NUMBA_CACHE_DIR"):
        if key in env:
            assert env[key].startswith("/tmp/"), f"{key} must be under the /tmp emptyDir"
    for t in build_workflow_template().to_dict()["spec"]["templates"]:
        if "container" in t:
            assert t["container"]["securityContext"]["readOnlyRootFilesystem"] is True
            assert {"name": "tmp", "mountPath": "/tmp"} in t["container"]["volumeMounts"]


def test_whisper_image_bakes_the_default_model() -> None:
    d = DOCKERFILES["whisper"]
    assert d.final.env["KUBESCRIBE_MODEL_CACHE"] == "/models"
    args = pairs(" ".join(d.final.values("ARG")))
    assert args["WHISPER_MODEL"] == PipelineSettings().whisper_model == "tiny.en"
    bake = [r for r in d.final.values("RUN") if "bake_model.py" in r]
    assert bake and "${WHISPER_MODEL}" in bake[0]
    # The bake runs after KUBESCRIBE_MODEL_CACHE is set, so it writes where pods read.
    instructions = d.final.instructions
    env_at = next(i for i, (k, v) in enumerate(instructions) if k == "ENV" and "KUBESCRIBE_MODEL_CACHE" in v)
    assert env_at < instructions.index(("RUN", bake[0]))


def test_images_are_named_after_their_dockerfiles() -> None:
    version = PYPROJECT["project"]["version"]
    for variant, image in _image_of_variant().items():
        repo, _, tag = image.rpartition(":")
        labels = DOCKERFILES[variant].final.labels
        expected = "kubescribe" if variant == "steps" else f"kubescribe-{variant}"
        assert repo.rsplit("/", 1)[-1] == expected == labels["org.opencontainers.image.title"]
        assert tag == version == labels["org.opencontainers.image.version"]
    assert "Naming convention" in (IMAGES / "README.md").read_text()


@pytest.mark.parametrize("variant", VARIANTS)
def test_copy_sources_exist_and_are_not_ignored(variant: str) -> None:
    d = DOCKERFILES[variant]
    ignore = (IMAGES / variant / "Dockerfile.dockerignore").read_text().split()
    allowed = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}
    assert "*" in ignore
    copies = [c for c in d.all("COPY") + d.all("ADD") if not c.startswith("--from")]
    assert copies
    for c in copies:
        *sources, _dest = shlex.split(c)
        for src in sources:
            assert (ROOT / src).exists(), f"{d.path}: COPY source {src} does not exist"
            assert src.split("/")[0] in allowed, f"{src} is excluded by Dockerfile.dockerignore"
    text = " ".join(d.all("COPY"))
    for needed in ("pyproject.toml", "README.md", "steps", "workflows"):
        assert needed in text


def test_steps_image_carries_no_torch_or_cuda() -> None:
    d = DOCKERFILES["steps"]
    code = " ".join(v for _, v in d.final.instructions + d.stages[0].instructions).lower()
    reqs = (IMAGES / "steps" / "requirements.txt").read_text().lower()
    for word in ("torch", "cuda", "nvidia", "whisper"):
        assert word not in code and not any(word in ln for ln in reqs.splitlines() if not ln.startswith("#"))
    assert any("--no-deps" in r for r in d.all("RUN")), "pyproject's deps (torch, whisper) must not be installed"


def _steps_requirements() -> list[str]:
    lines = (IMAGES / "steps" / "requirements.txt").read_text().splitlines()
    return [Requirement(ln).name for ln in (ln.split("#")[0].strip() for ln in lines) if ln]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = _norm(todo.pop())
        if n in seen:
            continue
        seen.add(n)
        for spec in md.distribution(n).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


_IMAGE_ONLY_RUN = r"""
import importlib.abc, json, sys
ALLOWED = set(json.loads(sys.argv[2])) | set(sys.stdlib_module_names) | {"steps"}
refused = set()
class OnlyWhatTheImageHas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top not in ALLOWED and not top.startswith(("__editable__", "_distutils_hack", "_sysconfigdata")):
            refused.add(top)
            raise ImportError(f"{name} is not installed in the steps image")
sys.meta_path.insert(0, OnlyWhatTheImageHas())
from steps.cli import main
from steps.store import open_store
open_store("s3://bucket/prefix")  # the S3 backend's imports (minio), without connecting
codes = [main(argv) for argv in json.loads(sys.argv[1])]
import imageio_ffmpeg  # the image has no ffmpeg on PATH: steps.audio falls back to this
print(json.dumps({"codes": codes, "refused": sorted(refused)}))
"""


def test_cpu_steps_run_with_only_the_steps_image_packages(tmp_path: Path) -> None:
    """plan / summarize / report run with every import outside images/steps/requirements.txt's closure refused
    (torch, whisper, hera, kubernetes...): the CPU image has what those code paths need, and no torch."""
    allowed_dists = _closure(_steps_requirements())
    assert not allowed_dists & {"torch", "openai-whisper", "triton", "numba"}
    allowed_modules = sorted(mod for mod, dists in md.packages_distributions().items()
                             if any(_norm(d) in allowed_dists for d in dists))
    out, run = tmp_path / "out", ["--output", str(tmp_path / "out"), "--run-id", "r1"]
    argvs = [
        ["plan", "--input", str(ROOT / "samples"), *run, "--shards-file", str(tmp_path / "shards.json")],
        ["summarize", *run, "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m"],
        ["report", *run],
    ]
    env = _env(KUBESCRIBE_S3_ENDPOINT="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")
    proc = subprocess.run([sys.executable, "-c", _IMAGE_ONLY_RUN, json.dumps(argvs), json.dumps(allowed_modules)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # plan and summarize succeed; report exits 1 because nothing was transcribed (no GPU step ran).
    assert result["codes"] == [0, 0, 1], proc.stdout
    assert (out / "report.json").is_file() and len(json.loads((tmp_path / "shards.json").read_text())) == 1
    # Optional imports that fall back quietly (httpx's CLI extras) are fine; torch and friends must not be tried.
    assert not set(result["refused"]) & {"torch", "whisper", "hera", "kubernetes"}, result["refused"]


def test_constraints_pin_every_runtime_dependency_as_pyproject_allows() -> None:
    pins = {}
    for line in (IMAGES / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        if _norm(req.name) == "torch":
            assert _norm(req.name) not in pins  # the whisper image pins it with TORCH_VERSION
            assert req.specifier.contains(pairs(" ".join(DOCKERFILES["whisper"].final.values("ARG")))["TORCH_VERSION"])
            continue
        assert _norm(req.name) in pins, f"{req.name} is not pinned in images/constraints.txt (re-run freeze_constraints.py)"
        assert req.specifier.contains(pins[_norm(req.name)]), f"{req.name}=={pins[_norm(req.name)]} violates {spec}"
    for req in _steps_requirements():
        assert _norm(req) in pins, f"{req} (images/steps/requirements.txt) is not pinned in images/constraints.txt"
    # The venv the tests pass in is installed with the `test` extra, whose pins can be tighter (kubernetes<37.0.2):
    # a pin outside them was never tested, and may not even resolve (kubernetes 37.0.2 needs python-dateutil>=3).
    for spec in PYPROJECT["project"]["optional-dependencies"]["test"]:
        req = Requirement(spec)
        if _norm(req.name) in pins:
            assert req.specifier.contains(pins[_norm(req.name)]), \
                f"{req.name}=={pins[_norm(req.name)]} violates the tested {spec} (re-run freeze_constraints.py)"


_OFFLINE_RESOLVE = r"""
import socket, sys
def no_network(*a, **k):
    raise OSError("network access attempted")
socket.socket.connect = no_network
socket.create_connection = no_network
from steps.models import resolve_checkpoint
print(resolve_checkpoint("tiny.en"))
"""


def test_bake_then_resolve_offline_without_writing(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    env = _env(KUBESCRIBE_MODEL_CACHE=str(cache), BAKE_VERIFY="0")
    bake = subprocess.run([sys.executable, str(IMAGES / "whisper" / "bake_model.py"), "tiny.en"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert bake.returncode == 0, bake.stderr
    baked = (cache / "BAKED").read_text().split("\t")
    assert baked[0] == "tiny.en" and Path(baked[1]).parent == cache
    assert not list(cache.glob("*.lock"))
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    # What a pod does: resolve the run's model in the baked cache, with no network and nothing to write.
    run = subprocess.run([sys.executable, "-c", _OFFLINE_RESOLVE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == baked[1]
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before


def test_bake_fails_clearly_for_an_unknown_model(tmp_path: Path) -> None:
    env = _env(KUBESCRIBE_MODEL_CACHE=str(tmp_path / "m"))
    proc = subprocess.run([sys.executable, str(IMAGES / "whisper" / "bake_model.py"), "no-such-model"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot bake 'no-such-model'") and "Traceback" not in proc.stderr
