"""COCO-style inputs for the LLaVA recipe: images + boxes (+ captions) become scene-graph rows.

Accepted: an instances file ({"images", "annotations" with "bbox" [x, y, w, h] in pixels,
"categories"}) and optionally a captions file (annotations with "caption"); both kinds of
annotation may also sit in one file. Colour and size are unknown for such objects, so only
counts, existence and left/right are checkable.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from synthloom.errors import BadInputError
from synthloom.multimodal.scenes import Scene, SceneObject


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"COCO file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise BadInputError(f"{path}: not a COCO file (needs an 'images' list)")
    return data


def load_coco(instances: str | Path, image_dir: str | Path | None = None,
              captions: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows {scene_id, scene, captions, image_ref} from COCO-style JSON, in image-id order."""
    path = Path(instances)
    data = _load(path)
    base = Path(image_dir) if image_dir else path.parent
    cats = {c["id"]: str(c["name"]) for c in data.get("categories", []) if "id" in c and "name" in c}
    anns = list(data.get("annotations", []))
    if captions:
        anns += list(_load(Path(captions)).get("annotations", []))
    objects: dict[Any, list[SceneObject]] = defaultdict(list)
    caps: dict[Any, list[str]] = defaultdict(list)
    sizes = {}
    for img in data["images"]:
        try:
            sizes[img["id"]] = (int(img["width"]), int(img["height"]), str(img["file_name"]))
        except (KeyError, TypeError, ValueError):
            raise BadInputError(f"{path}: each image needs id, width, height and file_name; got {img!r}"[:200]) from None
    for ann in anns:
        iid = ann.get("image_id")
        if iid not in sizes:
            continue
        if "caption" in ann:
            caps[iid].append(" ".join(str(ann["caption"]).split()))
        if "bbox" in ann:
            w, h, _ = sizes[iid]
            try:
                x, y, bw, bh = (float(v) for v in ann["bbox"])
            except (TypeError, ValueError):
                raise BadInputError(f"{path}: annotation {ann.get('id')} has a malformed bbox {ann['bbox']!r}") from None
            name = cats.get(ann.get("category_id"), "object")
            box = [round(max(0.0, x / w), 4), round(max(0.0, y / h), 4), round(min(1.0, (x + bw) / w), 4),
                   round(min(1.0, (y + bh) / h), 4)]
            objects[iid].append(SceneObject(category=name, box=box))
    rows = []
    for iid in sorted(sizes, key=str):
        w, h, fname = sizes[iid]
        ref = base / fname
        if not ref.is_file():
            raise BadInputError(f"image {fname} of COCO image {iid} not found in {base}")
        scene = Scene(w, h, objects[iid], background="photo", source="coco")
        rows.append({"scene_id": f"coco-{iid}", "scene": scene.to_dict(), "captions": caps[iid],
                     "image_ref": str(ref.resolve())})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise BadInputError(f"{path}: no images")
    return rows
