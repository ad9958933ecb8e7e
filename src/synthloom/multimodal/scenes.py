"""Synthetic scenes whose ground truth is a scene graph, drawn with Pillow.

A scene is a canvas with shapes (category, colour, size, box, optional text label). Everything a
LLaVA-style prompt needs is derived from the graph: captions, normalised bounding boxes
(`category: [x1, y1, x2, y2]`, 3 decimals) and checkable facts (counts, colours, left/right).
COCO-style inputs become the same graph with colour and size unknown.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 215), "yellow": (235, 195, 20),
    "purple": (135, 55, 175), "orange": (240, 125, 20), "black": (25, 25, 25),
}
SIZES = {"small": 0.14, "medium": 0.2, "large": 0.28}  # side as a fraction of the canvas height
BACKGROUNDS = {"white": (255, 255, 255), "light grey": (225, 225, 225), "beige": (240, 230, 205)}
LABELS = ("A", "B", "C", "X", "7", "42", "GO", "UP", "OK")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve")


@dataclass
class SceneObject:
    category: str
    box: list[float]             # normalised [x1, y1, x2, y2] in [0, 1]
    colour: str | None = None    # None when unknown (COCO inputs)
    size: str | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return f"{self.colour} {self.category}" if self.colour else self.category

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2


@dataclass
class Scene:
    width: int
    height: int
    objects: list[SceneObject] = field(default_factory=list)
    background: str = "white"
    source: str = "synthetic"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        objs = [SceneObject(**o) for o in data.get("objects", [])]
        return cls(width=int(data["width"]), height=int(data["height"]), objects=objs,
                   background=data.get("background", "white"), source=data.get("source", "synthetic"))


def plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def _overlaps(a: list[float], b: list[float], pad: float) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


def random_scene(seed: int, width: int = 336, height: int = 252, min_objects: int = 2, max_objects: int = 6,
                 label_prob: float = 0.3) -> Scene:
    """A random scene of non-overlapping shapes; the same seed gives the same scene."""
    r = random.Random(seed)
    scene = Scene(width, height, background=r.choice(sorted(BACKGROUNDS)))
    target = r.randint(min_objects, max_objects)
    palette = r.sample(sorted(COLOURS), k=min(len(COLOURS), r.randint(2, 4)))
    kinds = r.sample(SHAPES, k=r.randint(2, len(SHAPES)))
    for _ in range(target * 40):
        if len(scene.objects) == target:
            break
        size = r.choice(sorted(SIZES))
        side_h = SIZES[size]
        side_w = side_h * height / width
        x0, y0 = r.uniform(0.02, 0.98 - side_w), r.uniform(0.02, 0.98 - side_h)
        box = [round(x0, 4), round(y0, 4), round(x0 + side_w, 4), round(y0 + side_h, 4)]
        if any(_overlaps(box, o.box, 0.02) for o in scene.objects):
            continue
        colour = r.choice(palette)
        label = r.choice(LABELS) if r.random() < label_prob and colour not in ("yellow",) else None
        scene.objects.append(SceneObject(r.choice(kinds), box, colour, size, label))
    return scene


def draw_scene(scene: Scene) -> Image.Image:
    img = Image.new("RGB", (scene.width, scene.height), BACKGROUNDS.get(scene.background, (255, 255, 255)))
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        x0, y0, x1, y1 = (o.box[0] * scene.width, o.box[1] * scene.height, o.box[2] * scene.width,
                          o.box[3] * scene.height)
        fill = COLOURS.get(o.colour or "", (128, 128, 128))
        if o.category == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif o.category == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        elif o.category == "triangle":
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
        else:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
        if o.label:
            font = ImageFont.load_default(size=max(8, int((y1 - y0) * 0.32)))
            ty = y0 + (y1 - y0) * (0.62 if o.category == "triangle" else 0.5)
            draw.text(((x0 + x1) / 2, ty), o.label, fill=(255, 255, 255), font=font, anchor="mm")
    return img


def boxes_text(scene: Scene) -> str:
    """LLaVA's box serialisation: one `category: [x1, y1, x2, y2]` line per object, 3 decimals."""
    return "\n".join(f"{o.name}: [{', '.join(f'{v:.3f}' for v in o.box)}]" for o in scene.objects)


def _count_phrase(scene: Scene) -> str:
    counts = Counter(o.name for o in scene.objects)
    parts = [f"{number_word(n) if n > 1 else 'a'} {plural(name) if n > 1 else name}" for name, n in counts.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _region(o: SceneObject) -> str:
    v = "top" if o.cy < 0.4 else "bottom" if o.cy > 0.6 else "middle"
    h = "left" if o.cx < 0.4 else "right" if o.cx > 0.6 else "centre"
    if v == "middle" and h == "centre":
        return "centre"
    return f"{v} {h}"


def captions(scene: Scene, seed: int = 0) -> list[str]:
    """Five captions derived from the graph (LLaVA used five human captions per COCO image)."""
    if not scene.objects:
        return [f"An empty {scene.background} canvas."] * 5
    r = random.Random(seed)
    objs = scene.objects
    n = len(objs)
    out = [f"A {scene.background} background with {_count_phrase(scene)}.",
           f"There {'is' if n == 1 else 'are'} {number_word(n)} shape{'s' if n != 1 else ''} in the picture."]
    pairs = [(a, b) for a in objs for b in objs if a is not b and b.cx - a.cx > 0.1 and a.name != b.name]
    if pairs:
        a, b = r.choice(pairs)
        out.append(f"A {a.name} is to the left of a {b.name}.")
    else:
        out.append(f"Simple flat shapes on a {scene.background} canvas.")
    o = r.choice(objs)
    out.append(f"A {o.size + ' ' if o.size else ''}{o.name} in the {_region(o)} of the image.")
    labelled = [o for o in objs if o.label]
    if labelled:
        o = r.choice(labelled)
        out.append(f'The {o.name} has the text "{o.label}" written on it.')
    else:
        big = max(objs, key=lambda x: (x.box[2] - x.box[0]) * (x.box[3] - x.box[1]))
        out.append(f"The biggest shape is a {big.name}.")
    return out
