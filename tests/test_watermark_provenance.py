"""End to end: a watermarked run's outputs are detected, labelled with the key id, and never hold the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

KEY = "s3cret-watermark-key-for-tests-0451"
RECIPE = """
name: marked
steps:
  - {type: model, name: write, prompt: "Write a few sentences about {{ topic }}.", output: text,
     max_tokens: 90, temperature: 0.8}
"""


@pytest.mark.slow
def test_watermarked_run_is_detected_labelled_and_keyless(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    topics = ["the ocean", "mountain trains", "baking bread", "old libraries"]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"topic": t}) + "\n" for t in topics))
    env = {"SYNTHLOOM_WM_KEY": KEY, "OMP_WAIT_POLICY": "PASSIVE"}
    out = tmp_path / "run"
    spec = "embedded?watermark_key_env=SYNTHLOOM_WM_KEY&n_threads=1&n_slots=4&n_ctx=4096"
    res = run_cli("run", str(tmp_path / "recipe.yaml"), "--input", str(tmp_path / "in.jsonl"),
                  "--out", str(out), "--model", f"generator={spec}", env=env)
    assert res.returncode == 0, res.stderr
    stats = json.loads((out / "stats.json").read_text())
    key_id = stats["label"]["watermark_key_id"]
    assert key_id and len(key_id) == 8
    # detection with the same key
    det = run_cli("detect", str(out / "data" / "train.jsonl"), "--key-id", key_id, "--column", "text",
                  "--min-tokens", "20", env=env)
    assert det.returncode == 0, det.stderr
    summary = json.loads(det.stdout.strip().splitlines()[-1])
    assert summary["watermarked"] >= 3, summary
    # provenance names the key id on every row, and the key itself is nowhere in the run directory
    prov = run_cli("provenance", str(out / "data" / "train.parquet"))
    assert prov.returncode == 0 and key_id in prov.stdout
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f"key leaked into {f}"


# ---- provenance labels: semantic checks and Ed25519 tamper evidence --------------------------------
SIGNED_RECIPE = """
name: signed
steps:
  - {type: model, name: ask, prompt: "Ask about {{ topic }}", output: question}
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A real run (real CLI, real local HTTP server) with its JSONL, Parquet and dataset card."""
    from tests.fakes.openai_server import FakeOpenAIServer

    folder = tmp_path_factory.mktemp("prov")
    (folder / "recipe.yaml").write_text(SIGNED_RECIPE)
    (folder / "in.jsonl").write_text("".join(json.dumps({"topic": f"topic {i}"}) + "\n" for i in range(6)))
    with FakeOpenAIServer() as server:
        res = run_cli("run", str(folder / "recipe.yaml"), "--input", str(folder / "in.jsonl"), "--out",
                      str(folder / "run"), "--model", f"generator=openai:{server.url}#fake", "--no-report",
                      env={"OPENAI_API_KEY": "", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert res.returncode == 0, res.stderr
    return folder / "run"


def _copy_run(exported: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(exported, dest)
    return dest


def _edit_jsonl(path: Path, edit) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows = edit(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_labels_that_were_edited_rather_than_stripped_fail(exported, tmp_path):
    from synthloom.provenance import LabelsMissingError, inspect_provenance

    for name in ("train.jsonl", "train.parquet"):
        info = inspect_provenance(exported / "data" / name)
        assert info["rows"] == 6 and info["synthetic_rows"] == 6
    forgeries = {
        "synthetic is false although the row was generated": lambda m: m | {"synthetic": False},
        "every _meta value is empty": lambda m: {k: None for k in m},
        "not true/false": lambda m: m | {"synthetic": "yes"},
        "names no generator": lambda m: m | {"generator": ""},
        "names no recipe, step": lambda m: m | {"recipe": None, "step": " "},
        "lacks step": lambda m: {k: v for k, v in m.items() if k != "step"},
    }
    for why, forge in forgeries.items():
        path = tmp_path / "forged.jsonl"
        path.write_text((exported / "data" / "train.jsonl").read_text())
        _edit_jsonl(path, lambda rows: [rows[0], {**rows[1], "_meta": forge(rows[1]["_meta"])}, *rows[2:]])
        with pytest.raises(LabelsMissingError, match=f"row 1: .*{why}"):
            inspect_provenance(path)
    # a human seed row passed through unchanged may say synthetic: false (no model, no tokens)
    human = {"text": "written by a person", "_meta": {"synthetic": False, "generator": "synthloom", "recipe": "r",
                                                      "step": "source", "model": None, "usage": {"prompt_tokens": 0}}}
    path = tmp_path / "human.jsonl"
    path.write_text(json.dumps(human) + "\n")
    assert inspect_provenance(path)["synthetic_rows"] == 0


def test_signed_rows_verify_and_every_change_is_named(exported, tmp_path):
    run = _copy_run(exported, tmp_path / "run")
    key = tmp_path / "keys" / "signing.pem"
    signed = run_cli("provenance", str(run / "data" / "train.jsonl"), "--keygen", str(key), "--sign", str(key))
    assert signed.returncode == 0, signed.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    signed = run_cli("provenance", str(run / "data" / "train.parquet"), "--sign", str(key))
    assert signed.returncode == 0, signed.stderr
    card = (run / "README.md").read_text()
    front = __import__("yaml").safe_load(card.split("---")[1])
    block = front["synthloom"]["signing"]["train.jsonl"]
    assert block["algorithm"] == "ed25519" and len(block["key_id"]) == 16 and block["public_key"]
    assert "This dataset is synthetic" in card  # the card's text survives
    assert "PRIVATE" not in card and key.read_text() not in card
    for name in ("train.jsonl", "train.parquet"):
        ok = run_cli("provenance", str(run / "data" / name), "--verify")
        assert ok.returncode == 0, ok.stderr
        assert "signatures valid: 6 rows" in ok.stdout and "no row removed" in ok.stdout

    from synthloom.provenance import TamperedError, verify_file

    jsonl = run / "data" / "train.jsonl"
    original = jsonl.read_text()
    ids = [json.loads(x)["_meta"]["id"] for x in original.splitlines()]

    def tampered(edit) -> str:
        jsonl.write_text(original)
        _edit_jsonl(jsonl, edit)
        with pytest.raises(TamperedError) as e:
            verify_file(jsonl)
        return str(e.value)

    msg = tampered(lambda rows: [*rows[:2], {**rows[2], "question": rows[2]["question"] + "!"}, *rows[3:]])
    assert f"row 2 (id {ids[2]}): content or _meta changed" in msg and "row 1 " not in msg
    msg = tampered(lambda rows: [rows[0], {**rows[1], "_meta": {**rows[1]["_meta"], "synthetic": False}}, *rows[2:]])
    assert f"row 1 (id {ids[1]})" in msg
    assert "removed, added or reordered" in tampered(lambda rows: rows[:-1])
    assert "removed, added or reordered" in tampered(lambda rows: rows[::-1])
    assert "row 6 (id None): not signed" in tampered(lambda rows: [*rows, {"question": "new", "_meta": {}}])
    # the CLI says the same in one line, exit 1
    res = run_cli("provenance", str(jsonl), "--verify")
    assert res.returncode == 1 and "row 6" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    # Parquet: a changed cell is named too
    import pyarrow.parquet as pq

    pq_path = run / "data" / "train.parquet"
    table = pq.read_table(pq_path)
    questions = table.column("question").to_pylist()
    questions[4] = "a different question"
    pq.write_table(table.set_column(table.schema.get_field_index("question"), "question",
                                    __import__("pyarrow").array(questions)), pq_path)
    with pytest.raises(TamperedError, match=r"row 4 \(id \w+\): content or _meta changed"):
        verify_file(pq_path)


def test_a_re_signed_file_passes_only_against_its_own_key(exported, tmp_path):
    """What a signature does not prove: whoever rewrites rows can re-sign them and replace the
    card's key. Pinning the original key id / public key catches it."""
    from synthloom.provenance import TamperedError, generate_signing_key, sign_file, verify_file

    run = _copy_run(exported, tmp_path / "run")
    jsonl = run / "data" / "train.jsonl"
    generate_signing_key(tmp_path / "owner.pem")
    owner = sign_file(jsonl, tmp_path / "owner.pem")
    _edit_jsonl(jsonl, lambda rows: [{**r, "question": "forged"} for r in rows])
    generate_signing_key(tmp_path / "forger.pem")
    forger = sign_file(jsonl, tmp_path / "forger.pem")  # also rewrites the card
    assert verify_file(jsonl)["key_id"] == forger["key_id"] != owner["key_id"]
    with pytest.raises(TamperedError, match=f"signed with key '{forger['key_id']}', not {owner['key_id']}"):
        verify_file(jsonl, public_key=owner["public_key"])
    with pytest.raises(Exception, match="refusing to overwrite"):
        generate_signing_key(tmp_path / "owner.pem")
