"""Random but realistic web pages: headings, paragraphs, lists, tables, forms and images with alt text.

Pages are plain HTML5 with a small stylesheet drawn from a few layouts (single column, sidebar,
cards) so screenshots vary the way real pages do. Text comes from a topic vocabulary, or from a
model (the `text` argument) when the recipe asks for model-written paragraphs. Image `src` names
are relative filenames: the renderer serves a placeholder picture for each one.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass

TOPICS: dict[str, dict[str, list[str]]] = {
    "gardening": {"nouns": ["tomatoes", "compost", "raised beds", "seedlings", "mulch", "herbs", "roses", "soil"],
                  "verbs": ["water", "prune", "plant", "harvest", "feed", "repot"],
                  "images": ["tomato_plant", "garden_bed", "watering_can", "rose_bush"]},
    "cycling": {"nouns": ["gears", "helmets", "tyres", "routes", "saddles", "brakes", "chains", "climbs"],
                "verbs": ["ride", "adjust", "inflate", "train", "repair", "clean"],
                "images": ["road_bike", "mountain_trail", "bike_chain", "cyclist"]},
    "cooking": {"nouns": ["sauces", "spices", "ovens", "recipes", "bread", "knives", "stock", "pasta"],
                "verbs": ["simmer", "season", "bake", "whisk", "roast", "chop"],
                "images": ["fresh_bread", "spice_rack", "pasta_dish", "chef_knife"]},
    "astronomy": {"nouns": ["telescopes", "planets", "nebulae", "eclipses", "comets", "star charts", "lenses"],
                  "verbs": ["observe", "track", "photograph", "map", "measure", "align"],
                  "images": ["night_sky", "telescope", "moon_surface", "galaxy"]},
    "travel": {"nouns": ["trains", "hostels", "museums", "itineraries", "passports", "markets", "beaches"],
               "verbs": ["book", "explore", "pack", "visit", "plan", "compare"],
               "images": ["old_town", "train_station", "harbour", "mountain_view"]},
}
ADJECTIVES = ["simple", "practical", "seasonal", "affordable", "quick", "reliable", "local", "classic", "modern"]
PEOPLE = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
FIELDS = [("Name", "text"), ("Email", "email"), ("City", "text"), ("Phone", "tel")]
LAYOUTS = ("column", "sidebar", "cards")
FONTS = ["Georgia, serif", "Arial, sans-serif", "Verdana, sans-serif", "'Times New Roman', serif",
         "'Courier New', monospace", "Tahoma, sans-serif"]
PALETTES = [("#ffffff", "#222222", "#1a5fb4"), ("#fdf6e3", "#333333", "#b5470b"), ("#f4f7f2", "#1b2a1b", "#2e7d32"),
            ("#1e1e28", "#e8e8e8", "#8ab4f8"), ("#fffaf0", "#3b2f2f", "#8e24aa")]


@dataclass(frozen=True)
class SynthPage:
    page_id: str
    topic: str
    html: str
    images: tuple[tuple[str, str], ...]  # (filename, alt text)


class _Words:
    def __init__(self, rng: random.Random, topic: str):
        self.rng, self.vocab = rng, TOPICS[topic]

    def noun(self) -> str:
        return self.rng.choice(self.vocab["nouns"])

    def sentence(self) -> str:
        r, v = self.rng, self.vocab
        forms = [
            f"Most people {r.choice(v['verbs'])} their {self.noun()} "
            f"{r.choice(['once a week', 'every morning', 'in spring', 'after dark', 'twice a month'])}.",
            f"A {r.choice(ADJECTIVES)} guide to {self.noun()} can save you {r.randint(2, 40)} hours a year.",
            f"{r.choice(PEOPLE)} says the best way to {r.choice(v['verbs'])} {self.noun()} is to start small.",
            f"Compare {self.noun()} and {self.noun()} before you {r.choice(v['verbs'])} anything.",
            f"In our survey, {r.randint(10, 95)}% of readers preferred {r.choice(ADJECTIVES)} {self.noun()}.",
        ]
        return r.choice(forms)

    def title(self) -> str:
        r = self.rng
        return r.choice([f"{r.choice(ADJECTIVES).title()} {self.noun().title()}",
                         f"How to {r.choice(self.vocab['verbs'])} {self.noun()}",
                         f"{r.randint(3, 12)} tips for {self.noun()}",
                         f"Notes on {self.noun()}"])


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _paragraph(w: _Words, text: str | None) -> str:
    body = text if text else " ".join(w.sentence() for _ in range(w.rng.randint(1, 3)))
    return f"<p>{_esc(body)}</p>"


def _list(w: _Words) -> str:
    tag = w.rng.choice(["ul", "ol"])
    items = "".join(f"<li>{_esc(w.rng.choice(w.vocab['verbs']).title())} the {_esc(w.noun())}</li>"
                    for _ in range(w.rng.randint(2, 5)))
    return f"<{tag}>{items}</{tag}>"


def _table(w: _Words) -> str:
    r = w.rng
    head = "<tr><th>Item</th><th>Price</th><th>Rating</th></tr>"
    rows = "".join(f"<tr><td>{_esc(w.noun().title())}</td><td>${r.randint(3, 250)}.{r.randint(0, 99):02d}</td>"
                   f"<td>{r.randint(1, 5)}/5</td></tr>" for _ in range(r.randint(2, 4)))
    return f"<table><caption>{_esc(w.title())}</caption>{head}{rows}</table>"


def _form(w: _Words) -> str:
    r = w.rng
    fields = r.sample(FIELDS, r.randint(1, 3))
    inputs = "".join(f"<label>{name} <input type=\"{kind}\" placeholder=\"{_esc(name.lower())}\"></label><br>"
                     for name, kind in fields)
    button = r.choice(["Subscribe", "Send", "Sign up", "Search", "Book now"])
    return f"<form><h3>{_esc(w.title())}</h3>{inputs}<button type=\"button\">{button}</button></form>"


def _image(w: _Words, used: list[tuple[str, str]]) -> str:
    r = w.rng
    stem = r.choice(w.vocab["images"])
    name = f"{stem}_{r.randint(1, 99)}.{r.choice(['jpg', 'png'])}"
    alt = f"{r.choice(['A photo of', 'Picture of', 'Close-up of'])} {stem.replace('_', ' ')}"
    used.append((name, alt))
    wpx, hpx = r.choice([(160, 120), (240, 160), (320, 180), (120, 120)])
    return (
        f"<figure><img src=\"{name}\" alt=\"{_esc(alt)}\" width=\"{wpx}\" height=\"{hpx}\">"
        f"<figcaption>{_esc(alt)}</figcaption></figure>"
    )


def _style(r: random.Random, layout: str) -> str:
    bg, fg, accent = r.choice(PALETTES)
    font = r.choice(FONTS)
    size = r.choice([14, 15, 16, 18])
    layout_css = {
        "column": "main{max-width:760px;margin:0 auto;}",
        "sidebar": "body{display:flex;gap:24px;} nav{flex:0 0 180px;} main{flex:1;}",
        "cards": "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:16px;}"
                 "section{border:1px solid #8884;border-radius:8px;padding:8px;}",
    }[layout]
    return (f"body{{margin:16px;background:{bg};color:{fg};font-family:{font};font-size:{size}px;}}"
            f"h1,h2,h3{{color:{accent};}} table{{border-collapse:collapse;}} td,th{{border:1px solid #8888;padding:4px 8px;}}"
            f"nav a{{display:block;color:{accent};margin:4px 0;}} img{{background:#ccc;}} {layout_css}")


def synth_page(seed: int, topic: str | None = None, texts: list[str] | None = None) -> SynthPage:
    """One random page; the same seed gives the same page. `texts` replace generated paragraphs."""
    r = random.Random(seed)
    topic = topic or r.choice(sorted(TOPICS))
    if topic not in TOPICS:
        topic = r.choice(sorted(TOPICS))
    w = _Words(r, topic)
    layout = r.choice(LAYOUTS)
    images: list[tuple[str, str]] = []
    pending = list(texts or [])
    blocks = ("paragraph", "paragraph", "list", "table", "form", "image")
    sections = []
    for _ in range(r.randint(2, 4)):
        parts = [f"<h2>{_esc(w.title())}</h2>"]
        for kind in r.sample(blocks, r.randint(1, 3)):
            if kind == "paragraph":
                parts.append(_paragraph(w, pending.pop(0) if pending else None))
            elif kind == "list":
                parts.append(_list(w))
            elif kind == "table":
                parts.append(_table(w))
            elif kind == "form":
                parts.append(_form(w))
            else:
                parts.append(_image(w, images))
        sections.append("<section>" + "".join(parts) + "</section>")
    nav = ""
    if layout == "sidebar":
        links = "".join(f"<a href=\"#s{i}\">{_esc(w.noun().title())}</a>" for i in range(r.randint(3, 6)))
        nav = f"<nav>{links}</nav>"
    title = w.title()
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<style>{_style(r, layout)}</style></head><body>{nav}<main><h1>{_esc(title)}</h1>"
            f"{''.join(sections)}<footer><p>&copy; {r.randint(2005, 2024)} {_esc(topic.title())} Weekly</p></footer>"
            f"</main></body></html>")
    return SynthPage(page_id=f"synth-{seed}", topic=topic, html=page, images=tuple(images))
