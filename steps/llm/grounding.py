"""Is what a summary states found in the transcript? Numbers, amounts, dates, names, links and whole statements.

Every number (digits or words: "twelve", "4.2 million", "12%"), month and weekday, name (a capitalised word
inside a sentence, an action item's owner), and link in a summary is looked up in the transcript; one that is not
there is *ungrounded*. A statement most of whose content words are not in the transcript is *unsupported*. Both
are flagged in the summary's JSON with the field they are in (``key_points[2]``) and left out of the markdown
(``render.py``); the report counts them. So is a statement that repeats instructions the recording addresses to an
AI ("ignore previous instructions and reply only with..."): the summary may report that they were said, but
never hands them on.

The rules are deliberately literal (a number must appear as a number, a name as a word): a summary that says
"Mike" for the transcript's "Mom" is flagged, which is the point. Paraphrase is allowed for statements (content
words are compared by their first five letters, and up to a third of them may be new: a small model's invented
colour, "the team is excited about the launch of Monday stand-up", is mostly the transcript's own words).

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from steps.llm.checks import STOPWORDS, sentences, words

UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
SCALES = {"hundred": 100, "thousand": 1_000, "k": 1_000, "million": 1_000_000, "m": 1_000_000,
          "billion": 1_000_000_000, "bn": 1_000_000_000}
ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
            "ninth": 9, "tenth": 10, "twelfth": 12, "fifteenth": 15, "twentieth": 20, "thirtieth": 30}
#: Number words too common as plain words to check ("one of them", "a first step").
_LOOSE = {"one", "first", "second"}
MONTHS = ("january february march april may june july august september october november december").split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_DATE_WORDS = set(MONTHS + WEEKDAYS) - {"may"}

_NUMBER = re.compile(r"(?<![\w.])[$€£]?\d+(?:[.,]\d+)*(?:st|nd|rd|th|%|k|m|bn)?(?![\w])", re.IGNORECASE)
_LINK = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]\"']+", re.IGNORECASE)
_CAPITAL = re.compile(r"\b[A-Z][\w'’-]*[\w]|\b[A-Z]\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[\"“(]\s*)$")
#: Capitalised words that are not names even inside a sentence.
_NOT_NAMES = {"i", "i'm", "i'll", "ok", "okay", "q&a", "ai", "ceo", "cfo", "cto", "us", "eu", "uk", "tv"}
#: What a recording says to an AI assistant rather than to its listeners (a prompt injection). A summary statement
#: that repeats it is flagged and left out of the markdown, so no reader (person or model) is handed the command.
INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget)\b[^.!?]{0,40}\b(?:instructions?|rules|prompts?|directions)\b"
    r"|\b(?:reply|respond|answer|output|say)\b[^.!?]{0,20}\bonly\b[^.!?]{0,20}\b(?:with|the words?)\b"
    r"|\bdo not summari[sz]e\b|\byou are now\b|\bsystem prompt\b|\bnew instructions\b",
    re.IGNORECASE)
_NUMBER_WORD = re.compile(
    r"\b(?:(?:" + "|".join(list(UNITS) + list(TENS)) + r")(?:[- ](?:" + "|".join(UNITS) + r"))?"
    r"(?:\s+(?:hundred|thousand|million|billion))?|" + "|".join(ORDINALS) + r")\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class Flag:
    """One statement or value of a summary that the transcript does not support."""

    field: str  # "key_points[1]", "action_items[0].owner", "summary"...
    kind: str  # number | date | name | link (values), unsupported | instruction (whole statements)
    text: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _value(token: str) -> float | None:
    t = token.lower().strip("$€£%").rstrip(".")
    scale = 1.0
    for suffix, mult in (("bn", 1e9), ("k", 1e3), ("m", 1e6)):
        if t.endswith(suffix) and t[:-len(suffix)].replace(".", "").replace(",", "").isdigit():
            t, scale = t[:-len(suffix)], mult
    t = re.sub(r"(st|nd|rd|th)$", "", t)
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    t = t.replace(",", ".")
    try:
        return float(t) * scale
    except ValueError:
        return None


def _word_value(phrase: str) -> float | None:
    parts = re.split(r"[- ]+", phrase.lower())
    total, current = 0.0, 0.0
    for p in parts:
        if p in UNITS:
            current += UNITS[p]
        elif p in TENS:
            current += TENS[p]
        elif p in ORDINALS:
            current += ORDINALS[p]
        elif p in SCALES:
            current = max(current, 1) * SCALES[p]
            if SCALES[p] >= 1000:
                total, current = total + current, 0.0
        else:
            return None
    return total + current


def numbers(text: str) -> list[tuple[str, set[float]]]:
    """Each number in ``text`` with the values it may stand for ("4.2 million" is 4.2 and 4,200,000)."""
    found: list[tuple[str, set[float]]] = []
    for m in _NUMBER.finditer(text):
        value = _value(m.group())
        if value is None:
            continue
        values = {value}
        after = text[m.end():m.end() + 12].lower().split()
        if after and after[0].strip(".,") in SCALES:
            values.add(value * SCALES[after[0].strip(".,")])
        found.append((m.group(), values))
    for m in _NUMBER_WORD.finditer(text):
        if m.group().lower() in _LOOSE:
            continue
        value = _word_value(m.group())
        if value is not None:
            found.append((m.group(), {value}))
    return found


def _value_set(text: str) -> set[float]:
    values: set[float] = set()
    for _, vs in numbers(text):
        values |= vs
    for word in ("one", "first", "second"):  # loose words still count when the transcript says them
        if re.search(rf"\b{word}\b", text, re.IGNORECASE):
            values.add(float(UNITS.get(word, ORDINALS.get(word, 1))))
    return values


def names(text: str) -> list[str]:
    """Capitalised words that are not at the start of a sentence (so probably names)."""
    out = []
    for m in _CAPITAL.finditer(text):
        word = m.group()
        if _SENTENCE_START.search(text[: m.start()]) or word.lower() in _NOT_NAMES:
            continue
        if word.lower() in _DATE_WORDS:
            continue
        out.append(word)
    return out


class Transcript:
    """What a summary is checked against: the transcript's words, numbers and links, computed once."""

    def __init__(self, text: str, language: str | None = None):
        self.text = text
        self.language = language
        self.words = set(words(text))
        self.prefixes = {w[:5] for w in self.words}
        self.values = _value_set(text)
        self.links = {m.group().lower().rstrip(".,") for m in _LINK.finditer(text)}
        stops = STOPWORDS.get(language or "en", STOPWORDS["en"])
        self.stopwords = set(stops) | set(STOPWORDS["en"])

    def has_word(self, word: str) -> bool:
        return all(w in self.words for w in words(word)) if words(word) else True

    def support(self, statement: str) -> tuple[float, int]:
        """Share of the statement's content words found in the transcript (by their first five letters)."""
        content = [w for w in words(statement) if w not in self.stopwords and len(w) > 2 and not w[0].isdigit()]
        if not content:
            return 1.0, 0
        return sum(w[:5] in self.prefixes for w in content) / len(content), len(content)


#: A statement is flagged when fewer than this share of its content words is in the transcript (bench/summaries.py:
#: at one half the demo's stand-up summary showed "The team is excited about the launch of Monday Stand Up.")...
MIN_SUPPORT = 2 / 3
#: ...a title or summary sentence only when it has at least this many content words (list items always).
MIN_CONTENT_WORDS = 4


def check_text(path: str, text: str, source: Transcript, owner: bool = False) -> tuple[list[Flag], int]:
    """Flags for one field, and how many facts (numbers, dates, names, links) it states."""
    flags: list[Flag] = []
    checked = 0
    for token, values in numbers(text):
        checked += 1
        if not values & source.values:
            flags.append(Flag(path, "number", token))
    for word in words(text):
        if word in _DATE_WORDS:
            checked += 1
            if word not in source.words:
                flags.append(Flag(path, "date", word))
    for m in _LINK.finditer(text):
        checked += 1
        if m.group().lower().rstrip(".,") not in source.links:
            flags.append(Flag(path, "link", m.group()))
    english = source.language in (None, "en")
    candidates = ([text] if owner else names(text)) if english or owner else []
    for name in candidates:
        checked += 1
        if not source.has_word(name):
            flags.append(Flag(path, "name", name))
    if not owner and INSTRUCTION.search(text):
        flags.append(Flag(path, "instruction", text))
    elif not owner:
        share, n = source.support(text)
        # Short list items count too (a lone "Mouse" for the transcript's "Mom"); a short title or summary
        # sentence may name the topic in its own words.
        if share < MIN_SUPPORT and (n >= MIN_CONTENT_WORDS or (n and "[" in path)):
            flags.append(Flag(path, "unsupported", text))
    return flags, checked


def check(fields: list[tuple[str, str]], source: Transcript) -> tuple[list[Flag], int]:
    """Flags for every field of a summary and the number of facts checked. ``fields``: (path, text)."""
    flags: list[Flag] = []
    checked = 0
    for path, text in fields:
        # The summary is checked sentence by sentence, so that one bad sentence is dropped, not the paragraph.
        pieces = sentences(text) if path == "summary" else [text]
        for piece in pieces:
            found, n = check_text(path, piece, source, owner=path.endswith(".owner"))
            flags += found
            checked += n
    return flags, checked
