"""Summary quality: the prose prompt kubescribe used before issue 10 against the structured path, side by side.

For every transcript under ``bench/summaries/`` (``facts.json`` holds hand-written reference facts for each:
who, what, numbers, decisions, action items), both paths summarize it through the same local llama-server
(the bundled SmolLM2-135M unless ``--gguf``), one file at a time, and the summary a user would see is scored:

* **fact recall**: reference facts found in it (a fact is a list of groups of alternatives; every group must
  match, case-insensitively); for the structured path also apart for the model's text and for the highlights
  (sentences quoted verbatim from the transcript, ``steps/llm/highlights.py``), so it shows which recalled what;
* **ungrounded**: numbers, dates, names and links in it that the transcript does not state (``steps/llm/grounding.py``),
  against all such values it states; for the structured path also how many the pipeline flagged and left out;
* **degenerate**: summaries shown that are a loop, an echo of the transcript or in the wrong language
  (``steps/llm/checks.py``), plus injected text obeyed (``must_not``); the structured path's low-confidence
  summaries are counted apart (they are shown as "not available", never as a summary);
* **schema-valid**: answers that validated against the summary schema (structured path only);
* **TTFT and total time** per file.

The baseline is the code of commit 93e5970 (``steps/llm/prompts.py``, ``mapreduce.py``): the same prose
instructions, no repetition penalties, prose map-reduce, and the local profile's 256 output tokens it ran with.
Not a test: no assertion, nothing timed in CI. Run: ``.venv/bin/python bench/summaries.py --json
bench/results/summaries-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steps.llm import LLMClient, LLMSettings, summarize  # noqa: E402
from steps.llm.checks import degeneracy, detect_language  # noqa: E402
from steps.llm.grounding import Transcript, check, numbers  # noqa: E402
from steps.llm.mapreduce import split_text  # noqa: E402
from steps.llm.prompts import strip_reasoning  # noqa: E402
from steps.llm.schema import StructuredSummary  # noqa: E402
from steps.sanitize import strip_control  # noqa: E402
from workflows.local.llm_server import LlamaServer  # noqa: E402

DATA = ROOT / "bench" / "summaries"

# --- the baseline: the prose path as of commit 93e5970 ---------------------------------------------------------
OLD_SYSTEM = "You are a helpful assistant that writes short, factual summaries of meeting and speech transcripts."
OLD_INSTRUCTIONS = (
    "Summarize the following text in three to five sentences, in the language of the text. "
    "Mention the main topics, decisions, and who will do what. The text comes from automatic "
    "speech recognition and may contain errors. Do not add facts that are not in the text. "
    "Reply with the summary only."
)
OLD_HEADERS = {
    "full": "Transcript:\n",
    "map": "The text is one part of a longer transcript.\n\nTranscript part:\n",
    "reduce": "The text consists of summaries of consecutive parts of one transcript; "
              "combine them into one summary.\n\nPart summaries:\n",
}


def _old_overhead() -> int:
    est = lambda t: math.ceil(len(t) / 3.5)  # noqa: E731
    return est(OLD_SYSTEM) + est(OLD_INSTRUCTIONS) + max(est(h) for h in OLD_HEADERS.values()) + 16 + 8


def baseline(client: LLMClient, text: str) -> dict:
    """Today's prose summary: one request, or prose map-reduce when the transcript does not fit."""
    t0 = time.monotonic()
    ttft: list[float] = []

    def call(t: str, mode: str) -> str:
        r = client.chat([{"role": "system", "content": OLD_SYSTEM},
                         {"role": "user", "content": f"{OLD_INSTRUCTIONS}\n\n{OLD_HEADERS[mode]}{t}"}],
                        extra={"temperature": 0.2})
        ttft.append(r.ttft_s if r.ttft_s is not None else r.total_s)
        return strip_reasoning(strip_control(r.text))

    s = client.settings
    max_chars = int((s.context_tokens - _old_overhead() - s.max_output_tokens) * 3.5)
    chunks = split_text(text, max_chars)
    if len(chunks) == 1:
        out = call(text, "full")
    else:
        partials = [call(c, "map") for c in chunks]
        while len("\n\n".join(partials)) > max_chars:
            partials = [call(g, "reduce") for g in split_text("\n\n".join(partials), max_chars)]
        out = call("\n\n".join(partials), "reduce")
    return {"text": out, "ttft_s": ttft[0], "total_s": time.monotonic() - t0, "requests": len(ttft),
            "chunks": len(chunks)}


# --- scoring ------------------------------------------------------------------------------------------------------


def recall(text: str, facts: list[list[list[str]]]) -> tuple[int, list[int]]:
    low = text.lower().replace("\\", "")
    hits = [i for i, fact in enumerate(facts) if all(any(alt.lower() in low for alt in group) for group in fact)]
    return len(hits), hits


def _visible_fields(doc: dict) -> list[tuple[str, str]]:
    """The fields of a structured summary that the markdown shows (flagged ones left out, as render.py does):
    the model's, then the highlights (``highlights[i]``: sentences quoted from the transcript)."""
    from steps.llm.render import grounded_summary
    flagged = {f["field"] for f in doc.get("ungrounded") or []}
    s = StructuredSummary.model_validate(doc)
    shown = [(p, t) for p, t in s.texts() if p not in flagged and not p.startswith("summary")]
    quotes = [(f"highlights[{i}]", t) for i, t in enumerate(doc.get("highlights") or [])]
    return [("summary", grounded_summary(doc)), *shown, *quotes]


def _quoted(path: str) -> bool:
    return path.startswith("highlights[")


def score(text_fields: list[tuple[str, str]], transcript: str, language: str | None, spec: dict) -> dict:
    """Recall over everything shown, and apart: the model's text alone and the highlights alone. Values and
    numbers are counted in the model's text only: quotes cannot be ungrounded, counting them would flatter the
    ratio. The degeneracy checks see everything shown (the quotes must not make the summary an echo)."""
    text = "\n".join(t for _, t in text_fields)
    found, hits = recall(text, spec["facts"])
    model_fields = [(p, t) for p, t in text_fields if not _quoted(p)]
    model_found, model_hits = recall("\n".join(t for _, t in model_fields), spec["facts"])
    quoted_found, quoted_hits = recall("\n".join(t for p, t in text_fields if _quoted(p)), spec["facts"])
    flags, stated = check(model_fields, Transcript(transcript, language))
    values = [f for f in flags if f.kind != "unsupported"]
    numbers_stated = sum(len(numbers(t)) for _, t in model_fields)
    problems = degeneracy(text_fields, transcript, language) if text.strip() else ["empty"]
    obeyed = [m for m in spec.get("must_not", []) if m.lower() in text.lower()]
    return {"recall": found, "facts": len(spec["facts"]), "hits": hits, "values_stated": stated,
            "recall_model": model_found, "hits_model": model_hits, "recall_quoted": quoted_found,
            "hits_quoted": quoted_hits,
            "ungrounded_shown": len(values), "numbers_stated": numbers_stated,
            "ungrounded_numbers_shown": sum(f.kind == "number" for f in values),
            "ungrounded_examples": [f.text for f in values][:5],
            "degenerate": problems + [f"obeyed the injection: {m}" for m in obeyed]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", help="model for llama-server (default: the bundled SmolLM2-135M)")
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot (the local profile's)")
    ap.add_argument("--only", nargs="*", help="transcript names to run")
    ap.add_argument("--json", help="write every row here")
    ap.add_argument("--no-baseline", action="store_true", help="structured path only (for trying prompts)")
    ap.add_argument("--temperature", type=float, help="the structured path's temperature (default: LLMSettings')")
    ap.add_argument("--map-piece-tokens", type=int,
                    help="the structured path's map-reduce piece size (default: LLMSettings.piece_tokens)")
    ap.add_argument("--from-json", help="print the tables of an earlier run's --json output, run nothing")
    args = ap.parse_args()
    if args.from_json:
        print_table(json.loads(Path(args.from_json).read_text())["rows"])
        return 0
    spec_all = json.loads((DATA / "facts.json").read_text())
    names = [n for n in spec_all if not n.startswith("_") and (not args.only or n in args.only)]
    rows = []
    with LlamaServer(model=Path(args.gguf) if args.gguf else None, ctx_per_slot=args.ctx, parallel=2,
                     threads=1) as server:
        common = dict(url=server.url, model=server.model, context_tokens=args.ctx, concurrency=2)
        old = LLMSettings(**common, max_output_tokens=256, frequency_penalty=0, presence_penalty=0)
        new = LLMSettings(**common, max_output_tokens=512, map_piece_tokens=args.map_piece_tokens,
                          **({"temperature": args.temperature} if args.temperature is not None else {}))
        for name in names:
            spec = spec_all[name]
            transcript = (DATA / f"{name}.txt").read_text().strip()
            language = spec.get("language") or detect_language(transcript) or "en"
            if args.no_baseline:
                b = {"text": "", "ttft_s": 0.0, "total_s": 0.0, "requests": 0, "chunks": 0}
            else:
                with LLMClient(old) as client:
                    b = baseline(client, transcript)
            b_score = score([("summary", b["text"])], transcript, language, spec)
            with LLMClient(new) as client:
                s = summarize(client, transcript)
            doc = s.document
            low = doc["confidence"] == "low"
            s_score = score([] if low else _visible_fields(doc), transcript, language, spec)
            if low:
                s_score |= {"degenerate": [], "recall": 0, "hits": [], "recall_model": 0, "hits_model": [],
                            "recall_quoted": 0, "hits_quoted": []}
            row = {"name": name, "kind": spec["kind"], "words": len(transcript.split()),
                   "baseline": {**b, **b_score},
                   "structured": {"markdown": s.text, "document": doc, "ttft_s": s.ttft_s, "total_s": s.total_s,
                                  "requests": s.requests, "chunks": s.chunks, "format": s.format,
                                  "confidence": s.confidence, "retried": s.retried,
                                  "schema_failures": s.schema_failures, "flagged_values": s.ungrounded,
                                  "flagged_statements": s.unsupported, "values_checked": s.facts_checked,
                                  **s_score}}
            rows.append(row)
            print(f"{name:22} recall {b_score['recall']}/{len(spec['facts'])} -> {s_score['recall']}/"
                  f"{len(spec['facts'])} (model {s_score['recall_model']}, quotes {s_score['recall_quoted']}) "
                  f" degenerate {len(b_score['degenerate']) > 0} -> "
                  f"{len(s_score['degenerate']) > 0}  {s.format} {s.confidence}{' retried' if s.retried else ''}"
                  f"  {b['total_s']:.1f}s -> {s.total_s:.1f}s", flush=True)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(args.gguf or "bundled SmolLM2-135M-Instruct Q4_1"),
                                               "ctx_per_slot": args.ctx, "rows": rows}, indent=1) + "\n")
    return 0


def print_table(rows: list[dict]) -> None:
    def agg(path: str) -> dict:
        rs = [r[path] for r in rows]
        facts = sum(r["facts"] for r in rs)
        numbers = sum(r["numbers_stated"] for r in rs)
        clean = sum(r["recall"] for r in rs if not r["degenerate"])
        out = {
            "fact recall": f"{sum(r['recall'] for r in rs)}/{facts} ({sum(r['recall'] for r in rs) / facts:.0%})",
            "fact recall, degenerate summaries counted as 0": f"{clean}/{facts} ({clean / facts:.0%})",
            "ungrounded values shown / summary": f"{statistics.fmean(r['ungrounded_shown'] for r in rs):.2f}",
            "ungrounded numbers shown / numbers shown": f"{sum(r['ungrounded_numbers_shown'] for r in rs)}/{numbers}"
                                                         + (f" ({sum(r['ungrounded_numbers_shown'] for r in rs) / numbers:.0%})" if numbers else ""),
            "degenerate summaries shown": f"{sum(bool(r['degenerate']) for r in rs)}/{len(rs)}",
            "mean TTFT s": f"{statistics.fmean(r['ttft_s'] for r in rs):.2f}",
            "total time s (all files)": f"{sum(r['total_s'] for r in rs):.0f}",
        }
        if path == "structured":
            for key, label in (("recall_model", "fact recall, the model's text alone"),
                               ("recall_quoted", "fact recall, the highlights alone (quoted)")):
                n = sum(r.get(key, 0) for r in rs)
                out[label] = f"{n}/{facts} ({n / facts:.0%})"
            answers = sum(r["requests"] for r in rs)
            bad = sum(r["schema_failures"] for r in rs)
            out["schema-valid answers"] = f"{answers - bad}/{answers} ({(answers - bad) / answers:.0%})"
            out["low-confidence (not shown)"] = f"{sum(r['confidence'] == 'low' for r in rs)}/{len(rs)}"
            out["retried"] = f"{sum(bool(r['retried']) for r in rs)}/{len(rs)}"
            out["values flagged and left out"] = f"{sum(r['flagged_values'] for r in rs)} of " \
                                                 f"{sum(r['values_checked'] for r in rs)} stated"
            out["statements flagged unsupported"] = str(sum(r["flagged_statements"] for r in rs))
        else:
            out["schema-valid answers"] = "n/a (prose)"
        return out

    b, s = agg("baseline"), agg("structured")
    keys = list(dict.fromkeys([*b, *s]))
    width = max(len(k) for k in keys)
    print(f"\n| {'metric'.ljust(width)} | prose prompt (before) | structured (now) |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for k in keys:
        print(f"| {k.ljust(width)} | {b.get(k, '')} | {s.get(k, '')} |")
    print("\n| transcript | kind | words | recall before | recall now (model, quotes) | now: format, confidence |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        st = r["structured"]
        print(f"| {r['name']} | {r['kind']} | {r['words']} | {r['baseline']['recall']}/{r['baseline']['facts']}"
              f"{' (degenerate)' if r['baseline']['degenerate'] else ''} | {st['recall']}/{st['facts']} "
              f"({st.get('recall_model', '-')}, {st.get('recall_quoted', '-')}) | "
              f"{st['format']}, {st['confidence']}{', retried' if st['retried'] else ''} |")


if __name__ == "__main__":
    raise SystemExit(main())
