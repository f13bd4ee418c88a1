"""charts/kubescribe/values.yaml documents every key where it is defined, and the README's values table is made from it.

Regenerate the table after changing a comment or a default in values.yaml:

    .venv/bin/python -m tests.test_chart_values_docs --write

The comment format is helm-docs' (https://github.com/norwoodj/helm-docs), read line by line; values come from PyYAML:

* ``# -- description`` directly above a key (no blank line between), continued by the comment lines after it up to
  the key. Comment lines above the ``# --`` line are plain comments and stay out of the table.
* ``# -- (type) description`` names the type where the default does not show it; required when the default is null.
  Types: string, int, float, bool, list, object.
* ``# some.key.path -- (type) description`` documents a key that values.schema.json allows but values.yaml leaves out
  on purpose (an optional key whose absence means something); its default reads "not set".

Which keys: every mapping key, descending into a map when values.schema.json describes that map with ``properties``.
A map the schema leaves free-form (a label selector, annotations) and every list is one key with its default as JSON.
The tests fail when a key has no ``# --`` comment, when a ``# --`` comment documents nothing, when values.yaml and
values.schema.json disagree on the keys or on a key's type, and when README.md's table differs from the generated one.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1] / "charts" / "kubescribe"
VALUES_FILE = CHART_DIR / "values.yaml"
SCHEMA_FILE = CHART_DIR / "values.schema.json"
README_FILE = CHART_DIR / "README.md"
TABLE_START, TABLE_END = "<!-- values-table:start -->", "<!-- values-table:end -->"
REGENERATE = ".venv/bin/python -m tests.test_chart_values_docs --write"

#: Helm hands `global` to every chart (and subchart); a chart's schema may describe it, its values.yaml need not.
HELM_RESERVED_KEYS = {"global"}
TYPES = ("string", "int", "float", "bool", "list", "object")
NOT_SET = "not set"
PARENT_DEFAULT = "keys below"

_COMMENT = re.compile(r"^\s*#")
_DOC = re.compile(r"^\s*# --(?:\s(.*))?$")
_PATH_DOC = re.compile(r"^\s*# ([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)+) --(?:\s(.*))?$")
_TYPE = re.compile(r"^\(([a-z]+)\)\s*(.*)$")
_SCHEMA_TYPES = {
    "string": {"string"}, "integer": {"int"}, "number": {"int", "float"}, "boolean": {"bool"},
    "array": {"list"}, "object": {"object"}, "null": set(),
}


@dataclass(frozen=True)
class Row:
    """One line of the values table."""

    key: str
    type: str
    default: str
    description: str
    line: int  # 1-based line of the key (of the path comment for a key values.yaml leaves out)


@dataclass
class ValuesDocs:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # every key path values.yaml defines (documented or not)
    schema_only: set[str] = field(default_factory=set)  # key paths documented by a `# path --` comment


# ---------------------------------------------------------------------------------------------------------------
# Reading values.yaml


def type_of(value: Any) -> str | None:
    """helm-docs' name for the type of a YAML value (None for null)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return None


def schema_node(schema: dict, path: tuple[str, ...]) -> dict | None:
    node = schema
    for key in path:
        properties = node.get("properties")
        if not isinstance(properties, dict) or key not in properties:
            return None
        node = properties[key]
    return node


def _has_properties(node: dict | None) -> bool:
    return node is not None and isinstance(node.get("properties"), dict)


def _walk(node: yaml.MappingNode, path: tuple[str, ...], schema: dict) -> Iterator[tuple[tuple[str, ...], int, yaml.Node]]:
    """(key path, 0-based line of the key, value node) for every documented key, in file order."""
    for key_node, value_node in node.value:
        key_path = (*path, str(key_node.value))
        yield key_path, key_node.start_mark.line, value_node
        if isinstance(value_node, yaml.MappingNode) and value_node.value and _has_properties(schema_node(schema, key_path)):
            yield from _walk(value_node, key_path, schema)


def _continuation(lines: list[str], start: int, stop: int) -> list[str]:
    """The comment lines after a `# --` (or path) line, up to `stop` or the next doc line, without their `#`."""
    parts = []
    for text in lines[start + 1:stop]:
        if not _COMMENT.match(text) or _DOC.match(text) or _PATH_DOC.match(text):
            break
        parts.append(re.sub(r"^\s*# ?", "", text))
    return parts


def _join(first: str | None, rest: list[str]) -> str:
    return " ".join(p.strip() for p in [first or "", *rest] if p.strip())


def _split_type(description: str) -> tuple[str | None, str]:
    m = _TYPE.match(description)
    return (m.group(1), m.group(2)) if m else (None, description)


def _lookup(values: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def read_values_docs(text: str, schema: dict) -> ValuesDocs:
    """The table rows of a values.yaml text, and every way its comments fall short."""
    docs = ValuesDocs()
    lines = text.splitlines()
    values = yaml.safe_load(text) or {}
    root = yaml.compose(text)
    used_doc_lines: set[int] = set()
    if root is not None and not isinstance(root, yaml.MappingNode):
        docs.problems.append("values.yaml is not a mapping")
        return docs
    for path, line, value_node in _walk(root, (), schema) if root is not None else ():
        key = ".".join(path)
        docs.keys.add(key)
        # The comment block directly above the key; its last `# --` line starts the description.
        top = line
        while top > 0 and _COMMENT.match(lines[top - 1]):
            top -= 1
        starts = [i for i in range(top, line) if _DOC.match(lines[i])]
        if not starts:
            docs.problems.append(f"values.yaml:{line + 1}: {key} has no `# --` comment directly above it")
            continue
        start = starts[-1]
        used_doc_lines.add(start)
        description = _join(_DOC.match(lines[start]).group(1), _continuation(lines, start, line))
        declared, description = _split_type(description)
        if not description:
            docs.problems.append(f"values.yaml:{start + 1}: the `# --` comment of {key} is empty")
        value = _lookup(values, path)
        inferred = type_of(value)
        if declared is not None and declared not in TYPES:
            docs.problems.append(f"values.yaml:{start + 1}: {key}: unknown type ({declared}); use one of {', '.join(TYPES)}")
        elif declared is not None and inferred is not None and declared != inferred:
            docs.problems.append(f"values.yaml:{start + 1}: {key} is declared ({declared}) but its default is a {inferred}")
        if declared is None and inferred is None:
            docs.problems.append(f"values.yaml:{start + 1}: {key} defaults to null: name its type, `# -- (type) ...`")
        parent = isinstance(value_node, yaml.MappingNode) and value_node.value and _has_properties(schema_node(schema, path))
        default = PARENT_DEFAULT if parent else _json(value)
        docs.rows.append(Row(key, declared or inferred or "", default, description, line + 1))
    for i, text_line in enumerate(lines):
        if _DOC.match(text_line) and i not in used_doc_lines:
            docs.problems.append(f"values.yaml:{i + 1}: `# --` comment documents no key (it must sit directly above one)")
        m = _PATH_DOC.match(text_line)
        if not m:
            continue
        key, path = m.group(1), tuple(m.group(1).split("."))
        declared, description = _split_type(_join(m.group(2), _continuation(lines, i, len(lines))))
        if key in docs.keys:
            docs.problems.append(f"values.yaml:{i + 1}: {key} is in values.yaml: document it with `# --` above the key")
            continue
        docs.schema_only.add(key)
        if declared not in TYPES:
            docs.problems.append(f"values.yaml:{i + 1}: {key}: name its type, `# {key} -- (type) ...`")
        if not description:
            docs.problems.append(f"values.yaml:{i + 1}: the comment of {key} is empty")
        docs.rows.append(Row(key, declared or "", NOT_SET, description, i + 1))
    docs.rows.sort(key=lambda r: r.line)
    return docs


# ---------------------------------------------------------------------------------------------------------------
# values.schema.json


def schema_keys(schema: dict, path: tuple[str, ...] = ()) -> set[str]:
    """Every key path the schema declares through `properties` (not through array items or conditions)."""
    keys = set()
    for key, sub in (schema.get("properties") or {}).items():
        keys.add(".".join((*path, key)))
        if isinstance(sub, dict):
            keys |= schema_keys(sub, (*path, key))
    return keys


def schema_types(node: dict) -> set[str] | None:
    """The table types a schema node allows (None: it does not say)."""
    if "type" in node:
        declared = [node["type"]] if isinstance(node["type"], str) else node["type"]
        return set().union(*(_SCHEMA_TYPES[t] for t in declared))
    if "enum" in node or "const" in node:
        return {type_of(v) for v in node.get("enum", [node.get("const")]) if v is not None}
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        found = [schema_types(b) for b in branches]
        if all(f is not None for f in found):
            return set().union(*found)
    return None


def key_set_problems(docs: ValuesDocs, schema: dict) -> list[str]:
    in_schema = schema_keys(schema)
    problems = [f"{k} is in values.yaml but not in values.schema.json" for k in sorted(docs.keys - in_schema)]
    missing = in_schema - docs.keys - docs.schema_only - HELM_RESERVED_KEYS
    problems += [
        f"{k} is in values.schema.json but not in values.yaml (add it with a `# --` comment, or document an optional "
        f"key as `# {k} -- (type) ...`)" for k in sorted(missing)
    ]
    problems += [f"{k} is documented as a schema-only key but values.schema.json has no such key"
                 for k in sorted(docs.schema_only - in_schema)]
    return problems


def type_problems(docs: ValuesDocs, schema: dict) -> list[str]:
    problems = []
    for row in docs.rows:
        node = schema_node(schema, tuple(row.key.split(".")))
        allowed = schema_types(node) if node is not None else None
        if allowed is not None and row.type not in allowed:
            problems.append(f"values.yaml:{row.line}: {row.key} is a {row.type}; values.schema.json allows {sorted(allowed)}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The README table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(description: str) -> str:
    """Escape what GitHub would eat outside code spans: `<profile>` reads as an HTML tag."""
    parts = re.split(r"(`[^`]*`)", description)
    return "".join(p if p.startswith("`") else re.sub(r"<(?=[A-Za-z/])", r"\\<", p) for p in parts)


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_table(rows: list[Row]) -> str:
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for r in rows:
        default = r.default if r.default in (PARENT_DEFAULT, NOT_SET) else _code(r.default)
        out.append(f"| {_cell(_code(r.key))} | {r.type} | {_cell(default)} | {_cell(_markdown(r.description))} |")
    return "\n".join(out) + "\n"


def replace_table(readme: str, table: str) -> str:
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md needs the markers {TABLE_START} and {TABLE_END}, in that order")
    return readme[: start + len(TABLE_START)] + "\n" + table + readme[end:]


def chart_docs() -> tuple[ValuesDocs, dict]:
    schema = json.loads(SCHEMA_FILE.read_text())
    return read_values_docs(VALUES_FILE.read_text(), schema), schema


# ---------------------------------------------------------------------------------------------------------------
# The chart


def test_every_key_has_a_doc_comment():
    docs, _ = chart_docs()
    assert not docs.problems, "values.yaml documentation:\n" + "\n".join(docs.problems)
    assert "kueue.clusterQueue.preemption.borrowWithinCohort.policy" in docs.keys  # the walk reached nested keys


def test_values_and_schema_declare_the_same_keys():
    docs, schema = chart_docs()
    problems = key_set_problems(docs, schema)
    assert not problems, "\n".join(problems)


def test_documented_types_agree_with_the_schema():
    docs, schema = chart_docs()
    problems = type_problems(docs, schema)
    assert not problems, "\n".join(problems)


def test_readme_values_table_is_generated():
    docs, _ = chart_docs()
    readme = README_FILE.read_text()
    expected = replace_table(readme, render_table(docs.rows))
    diff = "\n".join(difflib.unified_diff(readme.splitlines(), expected.splitlines(), "README.md", "generated", lineterm="", n=0))
    assert readme == expected, f"the values table in {README_FILE.name} is stale; run `{REGENERATE}`\n{diff[:6000]}"


def test_readme_names_the_regenerate_command():
    readme = README_FILE.read_text()
    assert REGENERATE in readme[: readme.find(TABLE_START)], "say how to regenerate the table above it"


# ---------------------------------------------------------------------------------------------------------------
# The generator on small inputs

_SCHEMA = {
    "type": "object",
    "properties": {
        "global": {"type": "object"},
        "a": {"type": "object", "properties": {
            "name": {"type": "string"},
            "size": {"anyOf": [{"type": "string"}, {"type": "number"}]},
            "ids": {"type": ["integer", "null"]},
            "mode": {"enum": ["Never", "Always"]},
            "labels": {"type": "object"},
            "optional": {"type": "integer"},
        }},
        "ports": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
    },
}

_VALUES = """\
# A file comment.

# -- Section a.
a:
  # plain note, not in the table
  # -- The name
  # of a | thing, see `x|y` and <profile>.
  name: ""
  # -- Size in cores.
  size: "2"
  # -- (int) IDs; null: not set.
  ids: null
  # -- Never | Always.
  mode: Never
  # -- Free-form labels.
  labels:
    app: demo
  # a.optional -- (int) Only when set.
# -- Ports.
ports:
  - {port: 53}
"""


def test_generator_reads_nested_maps_lists_nulls_and_schema_only_keys():
    docs = read_values_docs(_VALUES, _SCHEMA)
    assert docs.problems == []
    assert [(r.key, r.type, r.default) for r in docs.rows] == [
        ("a", "object", PARENT_DEFAULT),
        ("a.name", "string", '""'),
        ("a.size", "string", '"2"'),
        ("a.ids", "int", "null"),
        ("a.mode", "string", '"Never"'),
        ("a.labels", "object", '{"app":"demo"}'),  # free-form in the schema: one key, not a.labels.app
        ("a.optional", "int", NOT_SET),
        ("ports", "list", '[{"port":53}]'),
    ]
    assert docs.rows[1].description == "The name of a | thing, see `x|y` and <profile>."
    assert key_set_problems(docs, _SCHEMA) == [] and type_problems(docs, _SCHEMA) == []
    table = render_table(docs.rows).splitlines()
    assert table[3] == "| `a.name` | string | `\"\"` | The name of a \\| thing, see `x\\|y` and \\<profile>. |"
    assert table[5] == "| `a.ids` | int | `null` | IDs; null: not set. |"
    assert table[8] == "| `a.optional` | int | not set | Only when set. |"


@pytest.mark.parametrize("values,problem", [
    ("a:\n  name: x\n", "a has no `# --` comment"),
    ("# -- A.\na:\n  # -- Name.\n\n  name: x\n", "a.name has no `# --` comment"),  # a blank line breaks the link
    ("# -- A.\na:\n  # -- Name.\n  name: x\n  # -- nothing below\n", "documents no key"),
    ("# -- A.\na:\n  # --\n  name: x\n", "comment of a.name is empty"),
    ("# -- A.\na:\n  # -- IDs.\n  ids: null\n", "a.ids defaults to null: name its type"),
    ("# -- A.\na:\n  # -- (int) Name.\n  name: x\n", "a.name is declared (int) but its default is a string"),
    ("# -- A.\na:\n  # -- (integer) IDs.\n  ids: 1\n", "unknown type (integer)"),
    ("# -- A.\na:\n  # -- Name.\n  name: x\n  # a.optional -- Only when set.\n", "a.optional: name its type"),
    ("# -- A.\na:\n  # -- Name.\n  name: x\n# a.name -- (string) Twice.\n", "a.name is in values.yaml"),
])
def test_generator_reports_undocumented_keys(values, problem):
    problems = read_values_docs(values, _SCHEMA).problems
    assert any(problem in p for p in problems), problems


def test_key_set_and_type_mismatches_are_reported():
    docs = read_values_docs("# -- A.\na:\n  # -- Name.\n  name: 3\n  # -- Typo.\n  nmae: x\n", _SCHEMA)
    assert docs.problems == []
    problems = key_set_problems(docs, _SCHEMA)
    assert "a.nmae is in values.yaml but not in values.schema.json" in problems
    assert any(p.startswith("a.size is in values.schema.json but not in values.yaml") for p in problems)
    assert not any(p.startswith("global ") for p in problems)  # Helm's reserved key
    assert type_problems(docs, _SCHEMA) == ["values.yaml:4: a.name is a int; values.schema.json allows ['string']"]


def test_replace_table_needs_the_markers():
    assert replace_table(f"x\n{TABLE_START}\nold\n{TABLE_END}\ny\n", "new\n") == f"x\n{TABLE_START}\nnew\n{TABLE_END}\ny\n"
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers\n", "new\n")


def main(argv: list[str]) -> int:
    docs, schema = chart_docs()
    table = render_table(docs.rows)
    if argv == ["--write"]:
        readme = README_FILE.read_text()
        updated = replace_table(readme, table)
        if updated != readme:
            README_FILE.write_text(updated)
        print(f"{README_FILE}: {'updated' if updated != readme else 'up to date'} ({len(docs.rows)} keys)")
    elif argv:
        print(f"usage: {REGENERATE}   (no argument: print the table)", file=sys.stderr)
        return 2
    else:
        sys.stdout.write(table)
    problems = docs.problems + key_set_problems(docs, schema) + type_problems(docs, schema)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
