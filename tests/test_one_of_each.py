"""One of each: the model folder's typed metadata, one calibre.csv reader beside its writer, one Dice."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from pipeline.core.errors import InputError
from pipeline.evaluation.metrics import dice
from pipeline.export.tables import calibre_csv_text, read_calibre_csv
from pipeline.inference.model import ModelMetadata, load_model
from pipeline.postprocess.measure import COLUMNS
from tests.conftest import ROOT

SHIPPED = ROOT / "models" / "plexus"  # the default model


def test_load_model_returns_typed_metadata_that_still_reads_as_its_json():
    _, meta = load_model(SHIPPED)
    raw = json.loads((SHIPPED / "metadata.json").read_text())
    assert isinstance(meta, ModelMetadata)
    assert meta.inference.patch_size == raw["inference"]["patch_size"] and meta.inference.tta is raw["inference"]["tta"]
    assert meta.weights.sha256 == raw["weights"]["sha256"] and meta.name == raw["name"]
    assert meta.preprocess_config.spacing == tuple(raw["preprocess"]["spacing"])
    assert meta.preprocess_config is meta.preprocess_config  # parsed once
    assert {**meta} == raw and meta["inference"] == raw["inference"] and meta.get("nothing") is None


def test_metadata_missing_a_field_is_an_input_error_naming_it(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(SHIPPED, folder)
    raw = json.loads((folder / "metadata.json").read_text())
    del raw["inference"]["overlap"]
    (folder / "metadata.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"metadata.json: inference.overlap: Field required"):
        load_model(folder)


def test_read_calibre_csv_reads_back_what_the_writer_wrote(tmp_path):
    rows = [{c: ("L4" if c == "level" else "anterior_left" if c == "channel" else 12 if c == "n_points" else 1.25)
             for c in COLUMNS},
            {c: ("NA" if c in ("level", "channel") else 0 if c == "n_points" else float("nan")) for c in COLUMNS}]
    path = tmp_path / "calibre.csv"
    path.write_text(calibre_csv_text(rows))
    back = read_calibre_csv(path)
    assert back[0] == {**rows[0]} and isinstance(back[0]["n_points"], int)
    assert back[1]["level"] == "NA" and all(math.isnan(back[1][c]) for c in COLUMNS[3:])


def test_one_dice_and_two_empty_masks_agree_perfectly():
    a = np.zeros((4, 4, 4), bool)
    assert dice(a, a) == 1.0
    b = a.copy()
    b[0, 0, :2] = True
    c = a.copy()
    c[0, 0, 1:3] = True
    assert dice(b, c) == pytest.approx(0.5) and dice(b, a) == 0.0
