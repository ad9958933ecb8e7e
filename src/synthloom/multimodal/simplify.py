"""Pix2Struct's simplified HTML: visible nodes only, text plus image filename and alt text.

Input is the DOM walk from `dom.js` (already limited to what is visible in the viewport). This
module builds the simplified tree, collapses single-child chains, linearises it in bracket
notation (`<text <child> <img_src=… img_alt=…>>`), picks the largest subtree that fits a length
budget, and lists the text spans (line fragments with boxes) that masking may cover.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

Box = tuple[float, float, float, float]


@dataclass
class Span:
    """One visible line fragment of a text node."""

    text: str
    box: Box


@dataclass
class Node:
    parts: list[str | Node] = field(default_factory=list)  # own text pieces and child nodes, in order
    spans: list[Span] = field(default_factory=list)          # line fragments of the own text pieces
    src: str | None = None                                    # set for images
    alt: str = ""
    img_box: Box | None = None

    @property
    def is_image(self) -> bool:
        return self.src is not None

    def children(self) -> list[Node]:
        return [p for p in self.parts if isinstance(p, Node)]


def _escape(text: str) -> str:
    # the brackets are the notation's syntax; keep them unambiguous in text
    return text.replace("<", "&lt;").replace(">", "&gt;")


def image_filename(src: str) -> str:
    """Only the file name of an image source: no scheme, host, directories or query (pitfall iii)."""
    if src.startswith("data:"):
        return ""
    return posixpath.basename(unquote(urlparse(src).path))


def build_tree(root: dict[str, Any] | None) -> Node | None:
    """The simplified tree of a DOM walk; None when nothing is visible."""
    if root is None:
        return None
    if root.get("tag") == "img":
        return Node(src=image_filename(root.get("src", "")), alt=" ".join(root.get("alt", "").split()),
                    img_box=tuple(root["rects"][0]))
    node = Node()
    for child in root.get("children", []):
        if "text" in child:
            node.parts.append(child["text"])
            node.spans.extend(Span(child["text"], tuple(r)) for r in child["rects"])
        else:
            sub = build_tree(child)
            if sub is not None:
                node.parts.append(sub)
    if not node.parts:
        return None
    # collapse chains: an element holding just one child element and no text of its own is that child
    while len(node.parts) == 1 and isinstance(node.parts[0], Node):
        node = node.parts[0]
    return node


def linearize(node: Node) -> str:
    if node.is_image:
        return f"<img_src={node.src} img_alt={_escape(node.alt)}>" if node.alt else f"<img_src={node.src}>"
    return "<" + " ".join(_escape(p) if isinstance(p, str) else linearize(p) for p in node.parts) + ">"


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children():
        yield from walk(child)


def texts(node: Node) -> list[str]:
    """The visible text pieces of a subtree, in document order."""
    out: list[str] = []
    for p in node.parts:
        out.extend([p] if isinstance(p, str) else texts(p))
    return out


def spans(node: Node) -> list[Span]:
    """Every visible text line fragment in a subtree (what masking may cover)."""
    return [s for n in walk(node) for s in n.spans]


def bounding_box(node: Node) -> Box | None:
    """The box around a subtree's visible content (text fragments and images)."""
    boxes = [s.box for s in spans(node)] + [n.img_box for n in walk(node) if n.img_box is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def choose_subtree(root: Node, budget: int) -> Node | None:
    """The largest subtree whose linearisation fits `budget` characters (the root when it fits)."""
    best: Node | None = None
    best_len = -1
    for node in walk(root):
        n = len(linearize(node))
        if best_len < n <= budget:
            best, best_len = node, n
    return best


def simplify(dom: dict[str, Any]) -> Node | None:
    """Simplified tree of a `Rendered.dom` result."""
    return build_tree(dom.get("root"))
