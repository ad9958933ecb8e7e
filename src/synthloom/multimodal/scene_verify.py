"""Check answers about a scene against its scene graph.

Recognised questions (case-insensitive, free wording around these forms):
  counts      "How many (colour) (size) SHAPEs ...?"                  -> a number
  colours     "What colour is the SHAPE?" / "What is the colour of ..."  -> a colour
  left/right  "Is the A (to the) left/right of the B?"                 -> yes / no
              "Is the A left or right of the B?"                        -> left / right
              "Is the A on the left (side of the image)?"               -> yes / no
  existence   "Is there a (colour) SHAPE ...?"                          -> yes / no
  labels      "What is written on the SHAPE?"                           -> the label text
Anything else, a phrase that does not pick out exactly one object, or an answer without the
needed word is *unverifiable* (kept and marked), never guessed.
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


def _number(answer: str) -> int | None:
    a = _norm(answer)
    m = re.search(r"\b(\d+|" + "|".join(NUMBER_WORDS) + r"|a single|only one|just one)\b", a)
    if m:
        w = m.group(1)
        return int(w) if w.isdigit() else NUMBERS.get(w, 1)
    if re.match(r"^(no|none|there are no|there is no)\b", a):
        return 0
    return None


def _yes_no(answer: str) -> str | None:
    m = re.search(r"\b(yes|no)\b", _norm(answer))
    return m.group(1) if m else None


def _side(answer: str) -> str | None:
    found = re.findall(r"\b(left|right)\b", _norm(answer))
    return found[0] if found and len(set(found)) == 1 else None


def _relation(a: SceneObject, b: SceneObject) -> str | None:
    dx = b.cx - a.cx
    if abs(dx) < MARGIN:
        return None
    return "left" if dx > 0 else "right"


def check_answer(question: str, answer: str, scene: Scene) -> Check:
    q = _norm(question).rstrip(" ?")
    if m := re.search(r"how many (.+?)(?: (?:are|is|can|do|does|appear|appears|in|on|there|shown|visible|you)\b|$)", q):
        objs = resolve(m.group(1), scene)
        if objs is None:
            return Check("unverifiable", "count", detail=f"unknown object {m.group(1)!r}")
        expected, got = len(objs), _number(answer)
        return _compare("count", str(expected), None if got is None else str(got))
    if m := (re.search(r"what colou?r (?:is|are) (?:the )?(.+)$", q) or re.search(r"what is the colou?r of (?:the )?(.+)$", q)):
        objs = resolve(m.group(1), scene)
        if not objs:
            return Check("unverifiable", "colour", detail=f"no object matches {m.group(1)!r}")
        colours = {o.colour for o in objs}
        if len(colours) != 1 or None in colours:
            return Check("unverifiable", "colour", detail=f"{m.group(1)!r} has no single known colour")
        said = _colours_in(answer)
        return _compare("colour", colours.pop(), said[0] if said else None)
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
        return _compare("exists", "yes" if objs else "no", _yes_no(answer))
    if m := re.search(
        r"what (?:is written|text is written|does it say|letter is|number is|label is) (?:on|inside|in) (?:the )?(.+)$", q
    ):
        obj = _one(m.group(1), scene)
        if isinstance(obj, str):
            return Check("unverifiable", "label", detail=obj)
        if not obj.label:
            return Check("unverifiable", "label", detail=f"the {obj.name} has no label")
        found = re.search(rf"(?<![a-z0-9]){re.escape(obj.label.lower())}(?![a-z0-9])", answer.lower())
        return Check("correct" if found else "wrong", "label", obj.label, None if not found else obj.label,
                     "" if found else f"answer does not contain {obj.label!r}")
    return Check("unverifiable", "free_form", detail="not a question the scene graph can check")


def _compare(kind: str, expected: str, got: str | None) -> Check:
    if got is None:
        return Check("unverifiable", kind, expected, None, "no checkable word in the answer")
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
    got = _yes_no(answer)
    if got is None and (side := _side(answer)):
        got = "yes" if side == asked else "no"
    return _compare("relation", "yes" if truth == asked else "no", got)


def _image_side_check(phrase: str, asked: str, answer: str, scene: Scene) -> Check:
    obj = _one(phrase, scene)
    if isinstance(obj, str):
        return Check("unverifiable", "image_side", detail=obj)
    if abs(obj.cx - 0.5) < MARGIN:
        return Check("unverifiable", "image_side", detail="object is centred")
    truth = "left" if obj.cx < 0.5 else "right"
    return _compare("image_side", "yes" if truth == asked else "no", _yes_no(answer))


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
