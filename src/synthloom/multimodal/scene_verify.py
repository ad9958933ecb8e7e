"""Check answers about a scene against its scene graph.

Recognised questions (case-insensitive, free wording around these forms):
  counts      "How many (colour) (size) SHAPEs ...?"                  -> a number
  colours     "What colour is the SHAPE?" / "What is the colour of ..."  -> a colour
  left/right  "Is the A (to the) left/right of the B?"                 -> yes / no
              "Is the A left or right of the B?"                        -> left / right
              "Is the A on the left (side of the image)?"               -> yes / no
  existence   "Is there a (colour) SHAPE ...?"                          -> yes / no
  labels      "What is written on the SHAPE?"                           -> the label text
Strict reading (a wrong "correct" poisons training data): a yes/no question needs an answer that
opens with an explicit yes or no (an echo of the question, "I cannot tell whether ...", is not a
yes); a count must match and no other number in the answer may disagree; hedged answers fail.
Every other answer (detailed descriptions, free-form turns) is checked by its *mentions*
(`check_mentions`): each object, colour, size, count and left/right/above/below relation it names
must exist in the graph, else it is wrong; an answer that names nothing checkable is unverifiable,
which the recipe does not keep in train.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Literal

from synthloom.multimodal.scenes import (
    COLOURS,
    NUMBER_WORDS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    number_word,
    plural,
)

Status = Literal["correct", "wrong", "unverifiable"]
GENERIC = {"shape", "shapes", "object", "objects", "thing", "things", "item", "items", "figure", "figures"}
COLOUR_ALIASES = {"grey": "grey", "gray": "grey", "violet": "purple"}
MARGIN = 0.05  # centres closer than this (normalised x) make left/right ambiguous
NUMBERS = {w: i for i, w in enumerate(NUMBER_WORDS)}


@dataclass
class Check:
    status: Status
    kind: str
    expected: str | None = None
    got: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.status == "unverifiable" else self.status == "correct"

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9'\" ]+", " ", text.lower())).strip()


def _colours_in(text: str) -> list[str]:
    words = re.findall(r"[a-z]+", text.lower())
    known = set(COLOURS) | set(COLOUR_ALIASES)
    return [COLOUR_ALIASES.get(w, w) for w in words if w in known]


def categories(scene: Scene) -> list[str]:
    """Category words the scene can answer about: a synthetic scene knows every shape it could hold
    (so "how many triangles?" has the answer 0); a COCO image only the categories annotated in it."""
    known = {o.category for o in scene.objects} | (set(SHAPES) if scene.source == "synthetic" else set())
    return sorted(known, key=len, reverse=True)  # longest first: "traffic light" before "light"


def resolve(phrase: str, scene: Scene) -> list[SceneObject] | None:
    """The objects a noun phrase refers to; None when the phrase names no known category."""
    p = f" {_norm(phrase)} "
    category = next((c for c in categories(scene) if f" {c} " in p or f" {plural(c)} " in p), None)
    if category is None and not any(f" {g} " in p for g in GENERIC):
        return None
    objs = [o for o in scene.objects if category is None or o.category == category]
    colours = _colours_in(phrase)
    if colours:
        objs = [o for o in objs if o.colour in colours]
    sizes = [s for s in SIZES if f" {s} " in p]
    if sizes:
        objs = [o for o in objs if o.size in sizes]
    label = re.search(r"(?:label(?:l)?ed|with the (?:text|label|letter|number))\s+\"?([a-z0-9]+)\"?", p)
    if label:
        objs = [o for o in objs if (o.label or "").lower() == label.group(1)]
    return objs


def _one(phrase: str, scene: Scene) -> SceneObject | str:
    objs = resolve(phrase, scene)
    if objs is None:
        return f"unknown object {phrase!r}"
    if len(objs) != 1:
        return f"{phrase!r} matches {len(objs)} objects"
    return objs[0]


_NUMBER_RE = re.compile(r"\b(\d+|" + "|".join(NUMBER_WORDS) + r"|a single|only one|just one)\b")


def _numbers(answer: str) -> list[int]:
    """Every count an answer states ("no"/"none" as 0 unless 'no' is an interjection)."""
    a = _norm(answer)
    found = [int(w) if w.isdigit() else NUMBERS.get(w, 1) for w in _NUMBER_RE.findall(a)]
    if re.search(r"(?:^|\bthere (?:are|is) )(?:no|none)\b(?! other)(?!,)", a) or re.match(r"^none\b", a):
        found.append(0)
    return found


def _number(answer: str) -> int | None:
    """The one count an answer states; None when it states none, several that disagree, or hedges."""
    found = set(_numbers(answer))
    exact = not _hedged(answer) and not _APPROX.search(_norm(answer))
    return found.pop() if len(found) == 1 and exact else None


_HEDGE = re.compile(
    r"\b(?:can ?not|can't|cant|couldn't|unable to|hard to|impossible to|not sure|unsure|unclear|i don't know|"
    r"i do not know|maybe|perhaps|possibly|probably|likely|might|it seems|seems to|i think|i guess|i believe)\b"
)
# approximate counts: fine in prose, never an exact count
_APPROX = re.compile(r"\b(?:about|around|approximately|roughly|at least|at most|more than|less than|fewer than|"
                     r"or so|several|many|some|a few)\b")


def _shape_categories(answer: str, scene: Scene) -> set[str]:
    """Categories an answer names (shape words and their synonyms, or the image's own categories)."""
    words = _norm(answer).split()
    found = {SHAPE_SYNONYMS[w] for w in words if w in SHAPE_SYNONYMS} if scene.source == "synthetic" else set()
    return found | {c for c in categories(scene) if c in words or plural(c) in words}


def _hedged(answer: str) -> bool:
    return bool(_HEDGE.search(_norm(answer)))


def _yes_no(answer: str) -> str | None:
    """An explicit leading yes or no; None for echoes, hedges and answers holding both."""
    a = _norm(answer)
    m = re.match(r"(?:well |so )?(yes|yeah|yep|correct|no|nope)\b", a)
    if not m or _hedged(answer):
        return None
    word = "yes" if m.group(1) in ("yes", "yeah", "yep", "correct") else "no"
    rest = a[m.end():]
    other = "no" if word == "yes" else "yes"
    if re.search(rf"\b{other}\b", rest) and not re.search(r"\bno (?:other|more)\b", rest):
        return None  # "Yes ... no": both labels
    return word


def _side(answer: str) -> str | None:
    found = re.findall(r"\b(left|right)\b", _norm(answer))
    return found[0] if found and len(set(found)) == 1 and not _hedged(answer) else None


def _relation(a: SceneObject, b: SceneObject) -> str | None:
    dx = b.cx - a.cx
    if abs(dx) < MARGIN:
        return None
    return "left" if dx > 0 else "right"


_BOX_ECHO = re.compile(r"\[\s*[01]?\.\d+\s*,|\b[a-z]+: \[")


def check_answer(question: str, answer: str, scene: Scene) -> Check:
    """The answer to `question` checked against the scene graph; whatever else the answer states must
    hold too ("Yes, the diamond is indeed left of the diamond" is not a right answer)."""
    if _BOX_ECHO.search(answer) or _COORDINATE.search(answer):  # the prompt's boxes copied into the answer
        return Check("wrong", "echo", detail="the answer copies the prompt's box coordinates")
    check = _check_question(question, answer, scene)
    if check.status == "correct" and check.kind != "mentions" and len(_norm(answer).split()) > 3:
        # the leading "No," is the answer, not a "no square" mention
        rest = check_mentions(re.sub(r"^\s*(?:yes|yeah|yep|no|nope)\b[\s,.!:;-]*", "", answer, flags=re.I), scene)
        if rest.status == "wrong":
            return Check("wrong", check.kind, check.expected, check.got, f"the rest of the answer: {rest.detail}")
    return check


# a box coordinate ("0.518"): scene answers have no reason to quote one
_COORDINATE = re.compile(r"(?<![\d.])0\.\d{2,}\b")


def _check_question(question: str, answer: str, scene: Scene) -> Check:
    q = _norm(question).rstrip(" ?")
    if m := re.search(r"how many (.+?)(?: (?:are|is|can|do|does|appear|appears|in|on|there|shown|visible|you)\b|$)", q):
        objs = resolve(m.group(1), scene)
        if objs is None:
            return Check("unverifiable", "count", detail=f"unknown object {m.group(1)!r}")
        expected, got = len(objs), _number(answer)
        asked = {o.category for o in objs} or {c for c in categories(scene) if c in _norm(m.group(1)).split()
                                                or plural(c) in _norm(m.group(1)).split()}
        if got is not None and any(re.search(rf"\b(?:a|an|one)\s+(?:[a-z]+\s+){{0,2}}{c}\b", _norm(answer))
                                   for c in asked):
            got = got if got == 1 else None  # "two squares, a square and a square": "a square" says one
        return _compare("count", str(expected), None if got is None else str(got))
    if m := (re.search(r"what colou?r (?:is|are) (?:the )?(.+)$", q) or re.search(r"what is the colou?r of (?:the )?(.+)$", q)):
        objs = resolve(m.group(1), scene)
        if not objs:
            return Check("unverifiable", "colour", detail=f"no object matches {m.group(1)!r}")
        colours = {o.colour for o in objs}
        if len(colours) != 1 or None in colours:
            return Check("unverifiable", "colour", detail=f"{m.group(1)!r} has no single known colour")
        said = set(_colours_in(answer))
        # "The triangle is a red square": the answer is about another shape
        others = _shape_categories(answer, scene) - {o.category for o in objs}
        clear = len(said) == 1 and not _hedged(answer) and not others
        return _compare("colour", colours.pop(), said.pop() if clear else None)
    if m := re.search(
        r"is (?:the )?(.+?) (?:to the |on the )?left or (?:to the |on the )?right (?:of|side of) (?:the )?(.+)$", q
    ):
        return _relation_check(m.group(1), m.group(2), None, answer, scene)
    if m := re.search(r"is (?:the )?(.+?) (?:to the |on the )?(left|right) (?:of|side of) (?:the )?(.+)$", q):
        if m.group(3).strip() in ("image", "picture", "scene", "canvas"):
            return _image_side_check(m.group(1), m.group(2), answer, scene)
        return _relation_check(m.group(1), m.group(3), m.group(2), answer, scene)
    if m := re.search(
        r"(?:is|are) (?:the )?(.+?) on the (left|right)(?: side| half)?(?: of the (?:image|picture|scene|canvas))?$", q
    ):
        return _image_side_check(m.group(1), m.group(2), answer, scene)
    if m := re.search(r"is there (?:a |an |any )(.+?)(?: in the (?:image|picture|scene|canvas))?$", q):
        objs = resolve(m.group(1), scene)
        if objs is None:
            return Check("unverifiable", "exists", detail=f"unknown object {m.group(1)!r}")
        got = _yes_no(answer)
        if got == "yes" and (said := set(_numbers(answer)) - {1}) and said != {len(objs)}:
            got = None  # "Yes, there are two" when there is one
        return _compare("exists", "yes" if objs else "no", got)
    if m := re.search(
        r"what (?:is written|text is written|does it say|letter is|number is|label is) (?:on|inside|in) (?:the )?(.+)$", q
    ):
        obj = _one(m.group(1), scene)
        if isinstance(obj, str):
            return Check("unverifiable", "label", detail=obj)
        if not obj.label:
            return Check("unverifiable", "label", detail=f"the {obj.name} has no label")
        quoted = {q.strip().lower() for q in re.findall(r"[\"“]([^\"”]{1,12})[\"”]", answer)}
        found = not _hedged(answer) and quoted <= {obj.label.lower()} and re.search(
            rf"(?<![a-z0-9]){re.escape(obj.label.lower())}(?![a-z0-9])", answer.lower())
        return Check("correct" if found else "wrong", "label", obj.label, None if not found else obj.label,
                     "" if found else f"answer does not contain {obj.label!r}")
    return check_mentions(answer, scene)


def _compare(kind: str, expected: str, got: str | None) -> Check:
    if got is None:  # the question is checkable, so an answer without a clear value fails it
        return Check("wrong", kind, expected, None, "no explicit, unhedged answer")
    status: Status = "correct" if got == expected else "wrong"
    return Check(status, kind, expected, got, "" if status == "correct" else f"expected {expected}, answer says {got}")


def _relation_check(pa: str, pb: str, asked: str | None, answer: str, scene: Scene) -> Check:
    a, b = _one(pa, scene), _one(pb, scene)
    if isinstance(a, str) or isinstance(b, str):
        return Check("unverifiable", "relation", detail=a if isinstance(a, str) else str(b))
    truth = _relation(a, b)
    if truth is None:
        return Check("unverifiable", "relation", detail="objects are vertically aligned")
    if asked is None:
        return _compare("relation", truth, _side(answer))
    # only an explicit yes/no counts: "I cannot tell whether the A is left of the B" echoes the
    # relation and is not a yes (issue #17)
    got = _yes_no(answer)
    side = _side(answer)
    if got and side and ("yes" if side == asked else "no") != got:
        got = None  # "No, it is to the left." asked "is it left of": the restatement contradicts the no
    return _compare("relation", "yes" if truth == asked else "no", got)


def _image_side_check(phrase: str, asked: str, answer: str, scene: Scene) -> Check:
    obj = _one(phrase, scene)
    if isinstance(obj, str):
        return Check("unverifiable", "image_side", detail=obj)
    if abs(obj.cx - 0.5) < MARGIN:
        return Check("unverifiable", "image_side", detail="object is centred")
    truth = "left" if obj.cx < 0.5 else "right"
    return _compare("image_side", "yes" if truth == asked else "no", _yes_no(answer))


# Object words a description may use. A synthetic scene holds only SHAPES, so any other object word
# names something invented; a COCO scene may hold any of the COCO categories.
SHAPE_SYNONYMS = {"circle": "circle", "circles": "circle", "disc": "circle", "discs": "circle", "dot": "circle",
                  "dots": "circle", "ball": "circle", "balls": "circle", "square": "square", "squares": "square",
                  "triangle": "triangle", "triangles": "triangle", "diamond": "diamond", "diamonds": "diamond",
                  "rhombus": "diamond"}
OTHER_OBJECTS = frozenset("""
rectangle rectangles oval ovals ellipse star stars heart hearts hexagon hexagons pentagon pentagons octagon
arrow arrows line lines cross crosses cube cubes cylinder cone sphere spheres polygon polygons ring rings
person people man men woman women child children boy girl dog dogs cat cats horse horses bird birds cow cows
sheep elephant bear zebra giraffe car cars bus truck bicycle bike motorcycle train boat airplane plane tree
trees flower flowers plant house houses building buildings sun moon cloud clouds sky grass road street
table chair chairs bench bottle cup glass bowl plate fork knife spoon banana apple orange pizza cake
book books clock phone laptop computer tv umbrella bag kite ball window door wall mountain river water
""".split()) - set(COLOURS)
# colour words no synthetic shape has: a description using them names a colour that is not there
OTHER_COLOURS = frozenset("brown pink white grey gray silver gold golden cyan magenta turquoise navy maroon teal".split())


def _phrase_objects(size: str | None, colour: str | None, noun: str, scene: Scene) -> list[SceneObject] | None:
    """Objects matching 'size colour noun'; None when the noun is not in the graph's vocabulary."""
    category = SHAPE_SYNONYMS.get(noun) if scene.source == "synthetic" else None
    if category is None:
        category = next((c for c in categories(scene) if noun in (c, plural(c))), None)
    generic = noun in GENERIC
    if category is None and not generic:
        return None
    objs = [o for o in scene.objects if generic or o.category == category]
    if colour:
        objs = [o for o in objs if o.colour == COLOUR_ALIASES.get(colour, colour)]
    if size:
        objs = [o for o in objs if o.size == size]
    return objs


def check_mentions(answer: str, scene: Scene) -> Check:
    """Every object, colour, size, count and relation the text names must hold in the scene graph.

    wrong: something named is absent or contradicted (an invented star, "three circles" for two, a
    red square that is blue, "the circle is left of the square" when it is right of it);
    correct: at least one mention was checked and all held; unverifiable: nothing checkable, or hedged.
    """
    text = _norm(answer)
    if not text:
        return Check("wrong", "mentions", detail="empty answer")
    if _hedged(answer):
        return Check("unverifiable", "mentions", detail="hedged answer")
    if not re.search(r"[.!?\"')\]”]\s*$", answer):
        return Check("unverifiable", "mentions", detail=f"cut off: ends with {answer.strip()[-30:]!r}")
    colour_words = set(COLOURS) | set(COLOUR_ALIASES) | OTHER_COLOURS
    colours = "|".join(sorted(colour_words, key=len, reverse=True))
    sizes = "|".join(SIZES)
    nouns = set(SHAPE_SYNONYMS) | set(OTHER_OBJECTS) | GENERIC
    if scene.source != "synthetic":
        nouns |= {c for c in categories(scene)} | {plural(c) for c in categories(scene)}
    numbers = "|".join(NUMBER_WORDS[1:])
    phrase = re.compile(
        rf"\b(?:(?P<neg>no|without|not a|not any)\s+)?(?:(?P<num>\d+|{numbers}|a|an|the|a single|only one)\s+)?"
        rf"(?:(?:other|more|different|similar|flat|simple|solid|bright|dark|plain|coloured|colored)\s+)?"
        rf"(?P<size>{sizes})?\s*(?P<colour>{colours})?\s*(?P<size2>{sizes})?\s*"
        rf"(?P<noun>{'|'.join(sorted(nouns, key=len, reverse=True))})\b")
    checked, problems = 0, []
    listed: Counter[tuple[int, str]] = Counter()  # (sentence, phrase) -> objects the sentence lists
    sentence_ends = [m.start() for m in re.finditer(r"[.!?\n]", answer.lower())]
    for m in phrase.finditer(text):
        noun, colour = m.group("noun"), m.group("colour")
        size = m.group("size") or m.group("size2")
        objs = _phrase_objects(size, colour, noun, scene)
        said = " ".join(x for x in (size, colour, noun) if x)
        if objs is None:
            if not m.group("neg"):
                problems.append(f"{said!r} is not in the scene")
            continue
        if noun in GENERIC and not (colour or size or m.group("num")):
            continue
        if colour and scene.source != "synthetic":
            problems.append(f"the colour of {said!r} is unknown for this image")
            continue
        num = m.group("num")
        checked += 1
        if m.group("neg"):
            if objs:
                problems.append(f"says no {said!r}, but there are {len(objs)}")
        elif num and (num.isdigit() or num in NUMBERS) and not re.match(r"\s*of\b", text[m.end():]):
            n = int(num) if num.isdigit() else NUMBERS[num]
            if n != len(objs):
                problems.append(f"says {n} {said!r}, the scene has {len(objs)}")
        elif not objs:
            problems.append(f"no {said!r} in the scene")
        elif num in ("a", "an") and noun not in GENERIC:
            # "with a green diamond, ... and a green diamond": one sentence listing more than there are
            key = (sum(end < m.start() for end in sentence_ends), said)
            listed[key] += 1
            if listed[key] > len(objs):
                problems.append(f"lists {listed[key]} x {said!r}, the scene has {len(objs)}")
    # predicates: "the circle is red" / "the square is small"
    predicate = (rf"\bthe (?:(?P<size>{sizes}) )?(?:(?P<own>{colours}) )?(?P<noun>[a-z]+) (?:is|looks|appears) "
                 rf"(?:a |an )?(?:(?P<colour>{colours})|(?P<big>{sizes}))\b")
    for m in re.finditer(predicate, text):
        objs = _phrase_objects(m.group("size"), m.group("own"), m.group("noun"), scene)
        if objs is None or not objs:
            continue
        checked += 1
        if m.group("colour") and COLOUR_ALIASES.get(m.group("colour"), m.group("colour")) not in {o.colour for o in objs}:
            problems.append(f"the {m.group('noun')} is not {m.group('colour')}")
        if m.group("big") and m.group("big") not in {o.size for o in objs}:
            problems.append(f"the {m.group('noun')} is not {m.group('big')}")
    # every colour word must be the colour of something (or of the background)
    for word in set(re.findall(rf"\b(?:{colours})\b", text)):
        word = COLOUR_ALIASES.get(word, word)
        if word not in {o.colour for o in scene.objects} and word not in scene.background:
            problems.append(f"nothing in the scene is {word}")
    # quoted text must be the label of the object the sentence names just before it
    labels = {(o.label or "").lower() for o in scene.objects}
    for quote in re.finditer(r"[\"“]([^\"”]{1,12})[\"”]", answer):
        checked += 1
        said = quote.group(1).strip().lower()
        if said not in labels:
            problems.append(f"no object is labelled {said!r}")
            continue
        before = re.split(r"[.!?\n]", answer[: quote.start()].lower())[-1]
        named = list(phrase.finditer(_norm(before)))
        if named:
            last = named[-1]
            objs = _phrase_objects(last.group("size") or last.group("size2"), last.group("colour"), last.group("noun"), scene)
            if objs and said not in {(o.label or "").lower() for o in objs}:
                problems.append(f"{said!r} is not written on the {last.group(0).strip()}")
    checked += _relation_mentions(answer, scene, problems)
    if problems:
        return Check("wrong", "mentions", detail="; ".join(problems[:4]))
    if not checked:
        return Check("unverifiable", "mentions", detail="names nothing the scene graph can check")
    return Check("correct", "mentions", detail=f"{checked} mentions hold in the scene graph")


_REL = re.compile(r"\b(?P<da>a|an|the) (?P<a>[a-z ]{3,40}?) (?:is|are|sits|sit|lies|lie|appears|appear|stands|stand)?\s?"
                  r"(?:placed |located |positioned |just |directly |slightly )?"
                  r"(?:(?:to|on) the (?P<side>left|right) of|(?P<vert>above|below|under|over)) "
                  r"(?P<db>a|an|the) (?P<b>[a-z ]{3,40}?)(?= and | but |,|$| in | while | which | with )")


def _relation_mentions(text: str, scene: Scene, problems: list[str]) -> int:
    """Check 'the A is to the left of the B' / 'above' / 'below' claims; returns how many were checked."""
    checked = 0
    for clause in re.split(r"[.;!?\n]", text.lower()):
        for m in _REL.finditer(_norm(clause)):
            a, b = resolve(m.group("a"), scene), resolve(m.group("b"), scene)
            if not a or not b:
                if a is None or b is None:
                    continue  # an unknown noun: reported by the object check
                problems.append(f"no {m.group('a') if not a else m.group('b')!r} for the relation")
                continue
            checked += 1
            side, above = m.group("side"), m.group("vert") in ("above", "over")
            pairs = [(x, y) for x in a for y in b if x is not y]
            facts = [(_relation(x, y) == side) if side else
                     (x.cy < y.cy - MARGIN) if above else (x.cy > y.cy + MARGIN) for x, y in pairs]
            # "a red circle is left of a square": some pair; "the red circle ...": every pair
            holds = any(facts) if "a" in (m.group("da")[:1], m.group("db")[:1]) else bool(facts) and all(facts)
            if not holds:
                problems.append(f"{m.group(0).strip()!r} does not hold")
    return checked


def scene_questions(scene: Scene, seed: int, k: int = 3) -> list[tuple[str, str]]:
    """Up to k checkable (question, gold answer) pairs drawn from the graph."""
    r = random.Random(seed)
    names = Counter(o.name for o in scene.objects)
    unique = [o for o in scene.objects if names[o.name] == 1 and o.colour]
    pool: list[tuple[str, str]] = []
    for cat in sorted({o.category for o in scene.objects}):
        n = sum(o.category == cat for o in scene.objects)
        pool.append((f"How many {plural(cat)} are there in the image?", f"There {'is' if n == 1 else 'are'} {number_word(n)}."))
    for o in scene.objects:
        if o.colour and sum(x.category == o.category for x in scene.objects) == 1:
            pool.append((f"What colour is the {o.category}?", f"The {o.category} is {o.colour}."))
    for a in unique:
        for b in unique:
            if a is not b and (rel := _relation(a, b)):
                pool.append((f"Is the {a.name} to the left of the {b.name}?",
                             "Yes." if rel == "left" else f"No, it is to the right of the {b.name}."))
    for o in unique:
        if o.label:
            pool.append((f"What is written on the {o.name}?", f'It says "{o.label}".'))
    r.shuffle(pool)
    return pool[:k]
