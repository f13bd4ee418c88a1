"""Highlights: a few sentences quoted verbatim from the transcript, chosen by a fixed scoring rule, no model.

Why: a small model keeps two or three facts of a transcript (bench/README.md, "Summaries"), and the facts a reader
most needs (numbers, dates, names, what was decided and who will do what) sit in a few sentences. Quoting those
sentences cannot invent anything: highlights are grounded by construction, so they are not grounding-checked, and
the markdown labels them as quoted from the transcript, apart from what the model wrote.

The rule, per sentence: points for each number (digits or number words, ``grounding.numbers``), date word
(month, weekday) and name (a capitalised word inside the sentence), for a decision/action cue ("agreed",
"will", "deadline"...) and for a named person at the start doing or taking on something ("Tom will..."); a
number, date or name the model's summary already shows earns nothing (the quotes complement the summary). Not
quoted: a greeting or sign-off, a command addressed to an AI (``grounding.INSTRUCTION``: a prompt injection),
a question, a sentence of fewer than :data:`MIN_WORDS` words or one longer than :data:`MAX_WORDS`
(unpunctuated speech recognition output). Sentences are taken one at a time, each scored against what is
shown so far (the summary and the quotes already taken, so every quote adds new facts), the most points per
word first (words are budgeted); the transcript is cut into as many stretches as sentences may be quoted, and a
strong sentence from a stretch not quoted yet goes before the rest (a long meeting's topics are each
represented). A sentence that mostly repeats one already taken is skipped.

Capped so it is never an echo: at most :data:`~steps.llm.settings.HIGHLIGHTS_MAX` sentences (more for long
recordings) and at most :data:`~steps.llm.settings.HIGHLIGHTS_MAX_SHARE` of the transcript's words, except that a
single quote may take up to :data:`~steps.llm.settings.HIGHLIGHTS_SINGLE_SHARE` of them; a transcript too short to
quote without restating it gets none.

This module runs inside pods: it must not import hera.
"""

from __future__ import annotations

import re

from steps.llm.checks import ECHO_MIN_TRANSCRIPT_WORDS, STOPWORDS, detect_language, words
from steps.llm.grounding import INSTRUCTION, MONTHS, WEEKDAYS, names, numbers
from steps.llm.settings import (HIGHLIGHTS_LONG_MAX, HIGHLIGHTS_MAX, HIGHLIGHTS_MAX_SHARE, HIGHLIGHTS_SINGLE_SHARE,
                                HIGHLIGHTS_WORDS_PER_EXTRA)

#: Sentences shorter than this say too little to quote ("Yes, twice."); longer ones are run-on ASR text.
MIN_WORDS = 5
MAX_WORDS = 45
#: A sentence needs at least this score to be quoted (one number or date; a cue alone is not enough).
MIN_SCORE = 2.0
#: A sentence from a stretch not quoted yet goes first only when this strong (two facts, or a fact and a
#: commitment): a weak one would spend the word budget on coverage alone.
STRONG_SCORE = 4.0
#: A sentence sharing this much of its content words with one already quoted repeats it.
REPEAT_SHARE = 0.6

_DATES = frozenset(MONTHS + WEEKDAYS + ["tomorrow", "tonight", "weekend"]
                   + "januar februar märz mai juni juli oktober dezember montag dienstag mittwoch donnerstag "
                     "freitag samstag sonntag morgen".split())
#: Words that mark a decision, a commitment or a deadline (English and German: the languages of the bench).
_CUES = re.compile(
    r"\b(?:decid\w*|agree\w*|approv\w*|postpon\w*|will|won't|must|need(?:s|ed)? to|deadline|due|plan\w*|"
    r"propos\w*|confirm\w*|promis\w*|book\w*|assign\w*|responsib\w*|expect\w*|launch\w*|release\w*|"
    r"beschlossen|entschieden|wird|werden|muss|bis|geplant|verschieben|verschoben)\b",
    re.IGNORECASE)
#: A sentence that opens with a greeting or a sign-off is ceremony, not content ("Welcome to the Monday stand up.").
_CEREMONY = re.compile(r"^\W*(?:welcome|thanks?|thank you|hello|hi|hey|good (?:morning|afternoon|evening)|bye|"
                       r"guten (?:morgen|tag)|hallo|vielen dank|danke)\b", re.IGNORECASE)
#: A named person committing to or reporting a task at the start of a sentence ("Alice finished...", "Tom will...").
_OWNER = re.compile(r"^([A-Z][\w'’-]+)(?: [A-Z][\w'’-]+)?:? (?:will|'ll|is going to|agreed|finished|fixed|promised|"
                    r"has to|needs to|owns|takes|wird|hat)\b")
_PRONOUNS = frozenset("i we you they he she it this that there these those our my".split())
#: Sentence ends: a full stop before a lower-case word is an abbreviation ("two p.m. on Friday").
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+(?![a-zäöüß])|\n+")
#: A German date ("am 15. Mai") is no sentence end.
_ORDINAL_DATE = re.compile(r"\b\d{1,2}\.$")
_MONTH_NEXT = re.compile(r"^(?:januar|februar|märz|april|mai|juni|juli|august|september|oktober|november|"
                         r"dezember)\b", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """``text``'s sentences, each on one line."""
    out: list[str] = []
    for piece in (" ".join(p.split()) for p in _SENTENCE_END.split(text)):
        if out and _ORDINAL_DATE.search(out[-1]) and _MONTH_NEXT.match(piece):
            out[-1] = f"{out[-1]} {piece}"
        elif piece:
            out.append(piece)
    return out


def limits(transcript_words: int) -> tuple[int, int]:
    """(sentences, words) that may be quoted from a transcript of ``transcript_words`` words."""
    extra = max(0, transcript_words - HIGHLIGHTS_WORDS_PER_EXTRA) // HIGHLIGHTS_WORDS_PER_EXTRA
    return min(HIGHLIGHTS_LONG_MAX, HIGHLIGHTS_MAX + extra), int(transcript_words * HIGHLIGHTS_MAX_SHARE)


def score(sentence: str, known: frozenset[str] = frozenset(), english: bool = True) -> float:
    """How much a reader needs this sentence (0: not worth quoting). Numbers, dates and names in ``known`` (the
    words the summary already shows) earn nothing: a quote should add what the summary lacks. Names count in
    English only (German capitalises every noun)."""
    n = len(words(sentence))
    if n < MIN_WORDS or n > MAX_WORDS or sentence.rstrip().endswith("?") or _CEREMONY.search(sentence):
        return 0.0
    if INSTRUCTION.search(sentence):  # a command addressed to an AI is never handed on, not even as a quote
        return 0.0
    points = 2.0 * min(3, sum(not set(words(token)) <= known for token, _ in numbers(sentence)))
    points += 2.0 * min(2, sum(w in _DATES and w not in known for w in words(sentence)))
    points += 1.0 * min(2, len({n for n in names(sentence) if n.lower() not in known})) if english else 0.0
    points += 1.5 * bool(_CUES.search(sentence))
    owner = _OWNER.search(sentence)
    points += 1.5 * bool(owner and owner.group(1).lower() not in _PRONOUNS)
    return points


_STOPS = frozenset(w for ws in STOPWORDS.values() for w in ws)  # every language's: a quote may mix them


def _content(sentence: str) -> set[str]:
    return {w for w in words(sentence) if w not in _STOPS and len(w) > 2}


def pick(transcript: str, summary: str = "") -> list[str]:
    """The highlights of ``transcript``: verbatim sentences of it, in transcript order; ``summary``: what the
    summary beside them already shows (its numbers, dates and names make a sentence worth less)."""
    candidates = split_sentences(transcript)
    total = len(words(transcript))
    if total < ECHO_MIN_TRANSCRIPT_WORDS or not candidates:
        return []
    most, budget = limits(total)
    known = set(words(summary))
    english = detect_language(transcript) in (None, "en")
    size = [len(words(c)) for c in candidates]
    stretch = max(1, -(-len(candidates) // most))  # one stretch of the transcript per quotable sentence

    def rank(si: tuple[float, int]) -> tuple[float, int]:  # most points per word first (words are budgeted)
        return -si[0] / size[si[1]] ** 0.5, si[1]

    chosen: list[int] = []
    used = 0
    while len(chosen) < most:
        # Scored against what is shown so far (the summary and the quotes taken): each quote adds new facts.
        frozen = frozenset(known)
        pool = [(sc, i) for i, c in enumerate(candidates)
                if i not in chosen
                and (used + size[i] <= budget or not chosen and size[i] <= total * HIGHLIGHTS_SINGLE_SHARE)
                and not _repeats(c, [candidates[j] for j in chosen])
                and (sc := score(c, frozen, english)) >= MIN_SCORE]
        if not pool:
            break
        covered = {j // stretch for j in chosen}
        fresh = [si for si in pool if si[0] >= STRONG_SCORE and si[1] // stretch not in covered]
        _, i = min(fresh or pool, key=rank)  # a strong sentence from a stretch not quoted yet, else the best
        chosen.append(i)
        used += size[i]
        known |= set(words(candidates[i]))
    return [candidates[i] for i in sorted(chosen)]


def _repeats(sentence: str, taken: list[str]) -> bool:
    mine = _content(sentence)
    return any(len(mine & _content(t)) >= REPEAT_SHARE * len(mine) for t in taken)
