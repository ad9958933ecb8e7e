"""Scene graphs, drawing, captions/boxes, and the verifier catching planted wrong answers."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from synthloom.errors import BadInputError
from synthloom.multimodal.coco import load_coco
from synthloom.multimodal.scene_verify import check_answer, scene_questions
from synthloom.multimodal.scenes import (
    COLOURS,
    Scene,
    SceneObject,
    boxes_text,
    captions,
    draw_scene,
    random_scene,
)


def two_shapes() -> Scene:
    return Scene(300, 200, [
        SceneObject("circle", [0.1, 0.2, 0.3, 0.5], "red", "medium", "A"),
        SceneObject("square", [0.6, 0.2, 0.8, 0.5], "blue", "large"),
        SceneObject("circle", [0.4, 0.6, 0.5, 0.8], "red", "small"),
    ])


@pytest.mark.parametrize("question,right,wrong,kind", [
    ("How many circles are there in the image?", "There are two circles.", "I can see three circles.", "count"),
    ("How many red circles are there?", "2", "Only one red circle.", "count"),
    ("How many triangles are in the picture?", "There are no triangles.", "There is one triangle.", "count"),
    ("What colour is the square?", "The square is blue.", "It is green.", "colour"),
    ("What color is the large square?", "Blue.", "Red.", "colour"),
    ("Is the blue square to the left of the small red circle?", "No, it is on the right.", "Yes, it is.", "relation"),
    ("Is the medium red circle left or right of the blue square?", "It is to the left.", "It is on the right.", "relation"),
    ("Is the blue square on the right side of the image?", "Yes.", "No, it is on the left side.", "image_side"),
    ("Is there a purple triangle in the image?", "No, there is not.", "Yes, there is one.", "exists"),
    ("What is written on the medium red circle?", 'The letter "A".', 'It says "B".', "label"),
])
def test_verifier_accepts_right_and_catches_planted_wrong_answers(question, right, wrong, kind):
    scene = two_shapes()
    ok = check_answer(question, right, scene)
    bad = check_answer(question, wrong, scene)
    assert (ok.status, ok.kind) == ("correct", kind), ok
    assert (bad.status, bad.kind) == ("wrong", kind), bad
    assert bad.ok is False and ok.ok is True


@pytest.mark.parametrize("question,answer,why", [
    ("What colour is the circle?", "Red.", "only red circles, but 'the circle' is two objects: still one colour"),
    ("Is the red circle to the left of the blue square?", "Yes.", "two red circles: ambiguous reference"),
    ("What is the mood of the picture?", "Calm and playful.", "free-form"),
    ("Is the horse left of the square?", "Yes.", "unknown object"),
])
def test_unverifiable_answers_are_marked_not_guessed(question, answer, why):
    check = check_answer(question, answer, two_shapes())
    if why.startswith("only red"):
        assert check.status == "correct"  # all matching objects share one colour
    else:
        assert check.status == "unverifiable" and check.ok is None, why


@pytest.mark.parametrize("question,answer", [
    ("Is the blue square to the left of the small red circle?",
     "I cannot tell whether the blue square is to the left of the small red circle."),  # echo, not a yes
    ("Is the blue square to the right of the small red circle?", "The blue square is to the right of it."),
    ("Is the blue square to the right of the small red circle?", "Yes and no."),
    ("Is there a blue square?", "Maybe yes."),
    ("How many circles are there?", "Several, it seems."),
    ("How many circles are there?", "There are two circles and one square."),  # another number disagrees
    ("How many circles are there?", "About two."),
    ("What colour is the square?", "Blue or red."),
    ("Describe the image.", "Two red circles, a blue square and a yellow star."),  # invented star
    ("Describe the image.", "The blue square is to the left of the medium red circle."),  # false relation
    ("Describe the image.", "There are three circles."),
    ("Describe the image.", "The square is green."),
])
def test_unclear_or_invented_answers_fail(question, answer):
    assert check_answer(question, answer, two_shapes()).ok is False


def test_grounded_descriptions_pass_and_empty_ones_are_unverifiable():
    scene = two_shapes()
    good = "Two red circles and a large blue square. A red circle is to the left of the blue square."
    assert check_answer("Describe the image.", good, scene).ok is True
    assert check_answer("Describe the image.", "A calm and lovely picture.", scene).ok is None
    for seed in range(30):  # the graph's own captions are true descriptions
        scene = random_scene(seed)
        assert check_answer("Describe the image.", " ".join(captions(scene, seed)), scene).ok is True


def test_planted_errors_on_random_scenes_are_all_caught():
    flips = {"count": 0, "colour": 0, "relation": 0}
    for seed in range(40):
        scene = random_scene(seed)
        for question, gold in scene_questions(scene, seed, k=12):
            assert check_answer(question, gold, scene).status == "correct", (seed, question, gold)
            if question.startswith("How many"):
                n = int(check_answer(question, gold, scene).expected)
                wrong, kind = f"There are {n + 1}.", "count"
            elif question.startswith("What colour"):
                true = check_answer(question, gold, scene).expected
                wrong, kind = f"It is {next(c for c in COLOURS if c != true)}.", "colour"
            elif question.startswith("Is the"):
                wrong, kind = ("No." if gold.startswith("Yes") else "Yes."), "relation"
            else:
                continue
            assert check_answer(question, wrong, scene).status == "wrong", (seed, question, wrong)
            flips[kind] += 1
    assert min(flips.values()) >= 10, flips


def test_scene_drawing_matches_the_graph():
    scene = random_scene(5, 200, 150, min_objects=3, max_objects=3, label_prob=0)
    img = draw_scene(scene)
    assert img.size == (200, 150)
    for o in scene.objects:  # the centre pixel of every shape has the shape's colour
        cx, cy = int(o.cx * 200), int(o.cy * 150)
        assert img.getpixel((cx, cy)) == COLOURS[o.colour]
    lines = boxes_text(scene).splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"[a-z]+ [a-z]+: \[\d\.\d{3}, \d\.\d{3}, \d\.\d{3}, \d\.\d{3}\]", line) for line in lines)
    caps = captions(scene, seed=1)
    assert len(caps) == 5 and "three shapes" in caps[1]
    assert Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_coco_style_input_becomes_scene_rows(tmp_path):
    Image.new("RGB", (200, 100), "white").save(tmp_path / "a.jpg")
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40]},
                            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [120, 20, 50, 50]},
                            {"id": 3, "image_id": 1, "caption": "Two dogs  on a lawn."}],
            "categories": [{"id": 3, "name": "dog"}]}
    (tmp_path / "inst.json").write_text(json.dumps(coco))
    (row,) = load_coco(tmp_path / "inst.json")
    scene = Scene.from_dict(row["scene"])
    assert row["captions"] == ["Two dogs on a lawn."]
    assert scene.objects[0].box == [0.05, 0.1, 0.25, 0.5]
    assert check_answer("How many dogs are there?", "Two dogs.", scene).status == "correct"
    assert check_answer("How many dogs are there?", "Three.", scene).status == "wrong"
    assert check_answer("What colour is the dog?", "Brown.", scene).status == "unverifiable"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadInputError, match="invalid JSON"):
        load_coco(tmp_path / "bad.json")
    (tmp_path / "a.jpg").unlink()
    with pytest.raises(BadInputError, match="not found"):
        load_coco(tmp_path / "inst.json")
