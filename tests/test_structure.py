"""The shape of the code (issue 8): small single-purpose modules, sibling steps, one owner per default and rule.

Static checks over the source (``ast``, no imports executed), so they hold for code paths no test runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STEPS = Path(__file__).resolve().parents[1] / "steps"
MODULES = sorted(STEPS.rglob("*.py"))
#: The steps of the DAG: siblings that talk only through the record layer (records, runstate, markers).
STEP_MODULES = ("steps.plan", "steps.transcribe", "steps.summarize", "steps.report")
#: The ground every step stands on: it never reaches up into a step.
GROUND = ("steps.records", "steps.runstate", "steps.markers", "steps.layout", "steps.store", "steps.defaults")
MAX_LINES = 500


def _name(path: Path) -> str:
    parts = path.relative_to(STEPS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, type_only: bool = True) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports included; ``if TYPE_CHECKING:`` ones
    unless ``type_only`` is false). ``from steps import layout`` counts as ``steps.layout`` as well as ``steps``."""
    tree = ast.parse(path.read_text(), str(path))
    if not type_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                package = _name(path).split(".")
                package = package if path.name == "__init__.py" else package[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _imports_module(imported: set[str], module: str) -> bool:
    return any(name == module or name.startswith(module + ".") for name in imported)


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    src = tmp_path / "steps" / "x.py"
    src.parent.mkdir()
    src.write_text("import os\nfrom steps import layout\n\ndef f():\n    from workflows.cli import main\n"
                   "if True:\n    import hera.workflows\n")
    global STEPS
    saved, STEPS = STEPS, tmp_path / "steps"
    try:
        found = _imports(src)
    finally:
        STEPS = saved
    assert {"os", "steps.layout", "workflows.cli", "hera.workflows"} <= found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(STEPS.parent)))
def test_no_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by job (at most {MAX_LINES})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(STEPS.parent)))
def test_steps_never_import_hera_or_workflows(path: Path) -> None:
    imported = _imports(path)
    for forbidden in ("hera", "workflows"):
        assert not _imports_module(imported, forbidden), f"{path.name} imports {forbidden}: steps/ runs in pods"


def test_steps_are_siblings_that_never_import_one_another() -> None:
    by_name = {_name(p): p for p in MODULES}
    for step in STEP_MODULES:
        imported = _imports(by_name[step])
        others = [other for other in STEP_MODULES if other != step and _imports_module(imported, other)]
        assert not others, f"{step} imports {others}: read what another step wrote through steps.records"


def test_only_the_dispatcher_imports_a_step() -> None:
    """Every other module of steps/ (engines, the LLM client, the record layer...) sits below the steps: a step
    may use it, it never uses a step. ``steps.cli`` dispatches to the steps, ``steps.__main__`` runs the CLI."""
    dispatchers = {"steps.cli", "steps.__main__"}
    offenders = {}
    for path in MODULES:
        name = _name(path)
        if name in STEP_MODULES or name in dispatchers:
            continue
        up = [step for step in STEP_MODULES if _imports_module(_imports(path), step)]
        if up:
            offenders[name] = up
    assert not offenders, f"modules below the steps import a step: {offenders}"


def test_steps_has_no_import_cycle() -> None:
    """The modules of steps/ form a DAG at run time (a function-level import is still a cycle; a type-only one is
    not). A module's own parent packages are left out: ``from steps.llm import document`` imports the sibling."""
    by_name = {_name(p): p for p in MODULES}
    graph = {name: {m for m in by_name if m != name and not name.startswith(m + ".") and m in _imports(path, False)}
             for name, path in by_name.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_record_layer_never_reaches_up_into_a_step() -> None:
    by_name = {_name(p): p for p in MODULES}
    for ground in GROUND:
        imported = _imports(by_name[ground])
        up = [step for step in (*STEP_MODULES, "steps.cli") if _imports_module(imported, step)]
        assert not up, f"{ground} imports {up}"


# --- one owner per default ----------------------------------------------------------------------------------------

#: Knobs whose default is owned by steps/defaults.py (its names), and their values there.
OWNED = {"shard_seconds": 1800, "max_shards": 64, "context_tokens": 8192, "max_output_tokens": 512,
         "concurrency": 4}
#: Literal values that may appear as a default only in the owner (4 and 512 are too common to ban as values).
OWNED_VALUES = (1800, 64, 8192)


def _defaults(tree: ast.AST) -> list[tuple[str, ast.expr]]:
    """(name, default expression) of every function parameter, class-body field and argparse ``default=``."""
    out: list[tuple[str, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            out += [(a.arg, d) for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults)]
            out += [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                    value = stmt.value
                    if isinstance(value, ast.Call):  # field(default=...), Field(...)
                        value = next((k.value for k in value.keywords if k.arg == "default"), value)
                    out.append((stmt.target.id, value))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest = next((f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")), "")
            out += [(dest, k.value) for k in node.keywords if k.arg == "default"]
    return out


def _literal(expr: ast.expr) -> object:
    try:
        return ast.literal_eval(expr)
    except ValueError:
        return None


def test_owned_defaults_are_defined_once_in_steps_defaults() -> None:
    from steps import defaults

    assert {name: getattr(defaults, name.upper() if name != "concurrency" else "SUMMARIZE_CONCURRENCY")
            for name in OWNED} == OWNED
    offenders = []
    for path in MODULES:
        if path == STEPS / "defaults.py":
            continue
        for name, expr in _defaults(ast.parse(path.read_text(), str(path))):
            value = _literal(expr)
            if name in OWNED and value is not None:
                offenders.append(f"{path.name}: {name} defaults to the literal {value!r}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value in OWNED_VALUES:
                offenders.append(f"{path.name}: {name} defaults to {value!r}, a value owned by steps/defaults.py")
    assert not offenders, "import the default from steps.defaults instead:\n" + "\n".join(offenders)


def test_the_default_scan_finds_literal_defaults() -> None:
    tree = ast.parse("def f(shard_seconds=1800, *, n=64): pass\n"
                     "class S:\n    context_tokens: int = 8192\n    max_shards: int = field(default=3)\n"
                     "p.add_argument('--max-output-tokens', type=int, default=512)\n")
    found = {name: _literal(expr) for name, expr in _defaults(tree)}
    assert found == {"shard_seconds": 1800, "n": 64, "context_tokens": 8192, "max_shards": 3, "max_output_tokens": 512}


def test_the_v1_rule_has_one_owner() -> None:
    """The OpenAI base-URL rule is ``steps.urls.openai_base_url``; nothing else in steps/ appends ``/v1``."""
    from steps.urls import openai_base_url

    assert openai_base_url("http://gw/") == openai_base_url(" http://gw/v1 ") == "http://gw/v1"
    owners = [p.name for p in MODULES if '"/v1"' in p.read_text() or "+= \"/v1\"" in p.read_text()]
    assert owners == ["urls.py"], owners


# --- workflows/local: the local runner's modules --------------------------------------------------------------------

LOCAL_RUNNER = Path(__file__).resolve().parents[1] / "workflows" / "local"


@pytest.mark.parametrize("path", sorted(LOCAL_RUNNER.glob("*.py")), ids=lambda p: f"workflows/local/{p.name}")
def test_every_local_runner_module_is_under_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < 500, f"workflows/local/{path.name} has {lines} lines: split it by job (under 500)"


# --- workflows/ (orchestration; the local runner is checked above) ---------------------------------------------------

ROOT = STEPS.parent
WORKFLOWS = ROOT / "workflows"
WORKFLOW_MODULES = sorted(p for p in WORKFLOWS.rglob("*.py") if "local" not in p.relative_to(WORKFLOWS).parts)


@pytest.mark.parametrize("path", WORKFLOW_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_workflows_module_is_under_500_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) < MAX_LINES


@pytest.mark.parametrize("path", sorted((ROOT / "steps").rglob("*.py")) + sorted(WORKFLOWS.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_packages_never_import_build_time_tools(path: Path) -> None:
    assert not {m for m in _imports(path) if m == "tools" or m.startswith("tools.")}


def test_library_modules_build_no_hera_objects_at_import() -> None:
    """hera's ``w = ...`` convention belongs to example files: importing the builders must build nothing."""
    import subprocess
    import sys

    code = ("import hera.workflows as h, workflows.pipeline, workflows.cron, workflows.cli;"
            "import gc; print(sum(isinstance(o, (h.Workflow, h.WorkflowTemplate, h.CronWorkflow)) for o in gc.get_objects()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "0"


def test_run_defaults_have_one_owner() -> None:
    from steps import defaults
    from workflows.cli import build_parser
    from workflows.settings import LOCAL_PROFILE, PipelineSettings

    s = PipelineSettings()
    assert (s.shard_seconds, s.max_shards, s.context_tokens, s.max_output_tokens, s.summarize_concurrency) == (
        defaults.SHARD_SECONDS, defaults.MAX_SHARDS, defaults.CONTEXT_TOKENS, defaults.MAX_OUTPUT_TOKENS,
        defaults.SUMMARIZE_CONCURRENCY)
    run = build_parser().parse_args(["run", "in", "--out", "out"])
    assert run.shard_seconds == LOCAL_PROFILE["shard_seconds"] and run.max_shards == LOCAL_PROFILE["max_shards"]
    assert run.context_tokens == LOCAL_PROFILE["context_tokens"]
    assert run.max_output_tokens == LOCAL_PROFILE["max_output_tokens"]
    assert run.concurrency == LOCAL_PROFILE["summarize_concurrency"]


def test_chart_secret_keys_are_the_python_ones() -> None:
    """Every ``key:`` under a secretKeyRef in the chart's templates is one of the names workflows/settings.py owns."""
    import re

    from workflows.settings import LLM_SECRET_KEYS, S3_SECRET_KEYS

    used = set()
    for tpl in (ROOT / "charts" / "kubescribe" / "templates").glob("*.yaml"):
        text = tpl.read_text()
        used |= set(re.findall(r"secretKeyRef:\s*\n(?:\s+\S.*\n)*?\s+key:\s*([\w-]+)", text))
        used |= set(re.findall(r"^\s+key:\s*(accesskey|secretkey|api-key|basic-auth)\s*$", text, re.M))
    assert used and used <= set(S3_SECRET_KEYS) | set(LLM_SECRET_KEYS), used
    assert set(S3_SECRET_KEYS) <= used
