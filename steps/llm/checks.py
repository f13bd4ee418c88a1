"""Is an answer degenerate? Loops, echoes of the transcript, the wrong language, nothing at all.

Small models fail in a few recognisable ways: one sentence repeated until the token limit, a list whose items are
all the same, the transcript handed back (sometimes with "Transcription:" in front), or an English answer to a
German recording. :func:`degeneracy` names every such problem in one answer; the caller rejects the answer,
retries once with a stricter request, and marks the file low-confidence if the retry fails too. Nothing here
calls the model: these are plain text statistics, cheap enough to run on every answer.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable

_WORD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_LABEL = re.compile(r"^\s*[\"'*#>\s]*(transcription|transcript)\s*:", re.IGNORECASE | re.MULTILINE)
_TAG = re.compile(r"</?\s*transcript\b", re.IGNORECASE)

#: An answer this compressible (zlib) is a loop, whatever its sentences look like (whisper uses 2.4 for text).
MAX_COMPRESSION_RATIO = 2.6
#: Word n-grams used for loop and echo detection.
LOOP_NGRAM = 6
ECHO_NGRAM = 6
#: The share of the transcript's n-grams that one answer may reproduce before it is an echo.
ECHO_COVERAGE = 0.6
#: Transcripts shorter than this (words) can hardly be summarized without restating them: no echo check.
ECHO_MIN_TRANSCRIPT_WORDS = 30

# The most frequent function words of the languages told apart here; enough for "which language is this text".
STOPWORDS = {
    "en": "the and of to a in is that it for was on with as are be this we will have at by not you but from they "
          "our or an he she which has were there been would their about what so can".split(),
    "de": "der die das und ist nicht ein eine zu den mit von sich des auf für im dem auch es wir ich sie wird "
          "werden haben hat bei noch nach aus wie oder aber über".split(),
    "fr": "le la les de des et est un une du en que qui pour dans pas sur au nous vous il elle ce avec sont "
          "par plus mais ont être aux cette".split(),
    "es": "el la los las de del y que en un una es por con para no se su al lo como más pero sus le ya "
          "fue este esta hemos".split(),
    "it": "il lo la le gli di e che è un una per non con del della sono si al alla ma come anche questo "
          "abbiamo".split(),
    "nl": "de het een en van is dat op te in niet met voor zijn er aan ook als bij maar wordt we hebben "
          "deze".split(),
    "pt": "o a os as de do da e que em um uma para com não por se no na mais mas foi ao dos das como "
          "vamos".split(),
}
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                  "nl": "Dutch", "pt": "Portuguese"}
_STOP_SETS = {lang: frozenset(words) for lang, words in STOPWORDS.items()}


def words(text: str) -> list[str]:
    """Lower-case words (numbers such as ``2.1`` and ``4,200`` stay one word)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def detect_language(text: str, min_words: int = 12) -> str | None:
    """ISO code of the language among :data:`STOPWORDS` with the most function words, or None when the text
    is too short, in another script, or no language clearly leads."""
    tokens = words(text)
    if len(tokens) < min_words:
        return None
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() or "À" <= c <= "ɏ" for c in letters) / len(letters) < 0.7:
        return None  # another script: not told apart here
    counts = {lang: sum(t in stops for t in tokens) for lang, stops in _STOP_SETS.items()}
    ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < max(3, 0.12 * len(tokens)) or top < 1.5 * second:
        return None
    return best


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / max(len(zlib.compress(raw)), 1)


def _normal(sentence: str) -> str:
    return " ".join(words(sentence))


def loops(fields: Iterable[tuple[str, str]], lists: Iterable[tuple[str, list[str]]] = ()) -> list[str]:
    lists = list(lists)
    """Repetition problems: a sentence or n-gram repeated inside one field, duplicated list items, one word over
    and over, or an answer as compressible as a loop."""
    problems: list[str] = []
    fields = list(fields)
    for path, text in fields:
        sents = [n for n in (_normal(s) for s in sentences(text)) if len(n.split()) >= 3]
        repeated = [s for s, c in Counter(sents).items() if c >= 2]
        if repeated:
            problems.append(f"loop: a sentence repeated in {path} ({repeated[0][:60]!r})")
            continue
        grams = Counter(ngrams(words(text), LOOP_NGRAM))
        if grams and max(grams.values()) >= 3:
            gram, count = grams.most_common(1)[0]
            problems.append(f"loop: {' '.join(gram)!r} {count} times in {path}")
            continue
        tokens = words(text)
        run = max((len(list(g)) for g in _runs(tokens)), default=0)
        if run >= 5:
            problems.append(f"loop: one word repeated {run} times in {path}")
    for path, items in lists:
        normal = [_normal(i) for i in items if _normal(i)]
        dupes = len(normal) - len(set(normal))
        if len(normal) >= 3 and dupes >= 2:  # one duplicate is dropped later; more is a loop
            problems.append(f"loop: {dupes} of {len(normal)} {path} are the same")
    # Per field (a list counts as one): facts repeated across fields are redundancy, not a loop.
    for path, text in [*fields, *((path, "\n".join(items)) for path, items in lists)]:
        if len(text) >= 200 and compression_ratio(text) > MAX_COMPRESSION_RATIO:
            problems.append(f"loop: {path} compresses {compression_ratio(text):.1f}x (repeated text)")
            break
    return problems


def _runs(tokens: list[str]) -> Iterable[list[str]]:
    run: list[str] = []
    for t in tokens:
        if run and t != run[-1]:
            yield run
            run = []
        run.append(t)
    if run:
        yield run


def echo(fields: Iterable[tuple[str, str]], transcript: str) -> list[str]:
    """The transcript handed back: a field that reproduces most of it, or a "Transcript:" label / the
    transcript's delimiter in the answer."""
    problems: list[str] = []
    fields = list(fields)
    joined = "\n".join(text for _, text in fields)
    if _LABEL.search(joined) or _TAG.search(joined):
        problems.append("echo: the answer labels or quotes the transcript block")
    source = words(transcript)
    if len(source) < ECHO_MIN_TRANSCRIPT_WORDS:
        return problems
    grams = set(ngrams(source, ECHO_NGRAM))
    candidates = [*fields, ("answer", joined)]
    for path, text in candidates:
        mine = set(ngrams(words(text), ECHO_NGRAM))
        if not mine or not grams:
            continue
        coverage = len(mine & grams) / len(grams)
        if coverage >= ECHO_COVERAGE:  # quoting a sentence or two of a long transcript is extraction, not echo
            problems.append(f"echo: {path} repeats {coverage:.0%} of the transcript")
            break
    return problems


def copies_example(fields: Iterable[tuple[str, str]], transcript: str, example: str) -> list[str]:
    """The answer repeats the prompt's worked example (its wording, not the transcript's)."""
    if not example:
        return []
    theirs = set(ngrams(words(example), 4)) - set(ngrams(words(transcript), 4))
    mine = set(ngrams(words(" ".join(text for _, text in fields)), 4))
    return ["echo: the answer copies the prompt's example"] if len(mine & theirs) >= 2 else []


def wrong_language(fields: Iterable[tuple[str, str]], expected: str | None) -> list[str]:
    """The answer is confidently in another language than the transcript."""
    if expected is None:
        return []
    got = detect_language(" ".join(text for _, text in fields))
    if got is not None and got != expected:
        return [f"wrong language: {LANGUAGE_NAMES.get(got, got)} for a {LANGUAGE_NAMES.get(expected, expected)} "
                "transcript"]
    return []


def degeneracy(fields: list[tuple[str, str]], transcript: str, language: str | None,
               lists: Iterable[tuple[str, list[str]]] = (), example: str = "") -> list[str]:
    """Every reason to reject this answer (empty list: none). ``fields``: (path, text) of every text field;
    ``example``: the worked example the prompt showed (an answer must not repeat it)."""
    if not any(text.strip() for _, text in fields):
        return ["empty: the answer has no text"]
    return [*loops(fields, lists), *echo(fields, transcript), *copies_example(fields, transcript, example),
            *wrong_language(fields, language)]
