"""The artifact writers every job kind uses (worker/artifacts.py): RFC 4180 CSV that reads back
cell for cell, float32 C-order arrays, and JSON whose bytes depend only on the document."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from worker.artifacts import csv_artifact, json_artifact, npy_artifact, png_artifact

AWKWARD_NAMES = ["price, net", 'the "best" size', "größe (m²)", "two\nlines", "plain"]


def test_csv_quotes_only_what_rfc_4180_requires_and_reads_back_cell_for_cell():
    rows = [["0", "1.5", "-2", "3e-09", "0", "7"], ["42", "0.125", "0", "1", "-1", "2"]]
    blob = csv_artifact("attributions.csv", ["index", *AWKWARD_NAMES], rows)
    assert (blob.name, blob.content_type) == ("attributions.csv", "text/csv")
    # Written out by hand from RFC 4180 section 2: a field with a comma, a quote or a line break
    # is enclosed in quotes, a quote inside doubled; others (UTF-8 included) as they are.
    expected = (
        'index,"price, net","the ""best"" size",größe (m²),"two\nlines",plain\n'
        "0,1.5,-2,3e-09,0,7\n"
        "42,0.125,0,1,-1,2\n"
    )
    assert blob.data == expected.encode("utf-8")
    assert list(csv.reader(io.StringIO(blob.data.decode("utf-8")))) == [["index", *AWKWARD_NAMES], *rows]


def test_npy_is_float32_in_c_order_whatever_comes_in():
    values = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
    fortran = np.asfortranarray(values)
    blob = npy_artifact("images.npy", fortran)
    assert (blob.name, blob.content_type) == ("images.npy", "application/octet-stream")
    assert b"'fortran_order': False" in blob.data[:128]
    back = np.load(io.BytesIO(blob.data))
    assert back.dtype == np.float32 and back.shape == (2, 3, 4)
    assert np.array_equal(back, values.astype(np.float32))
    assert blob.data == npy_artifact("images.npy", values).data  # the memory layout does not show


def test_json_keeps_key_order_indents_by_one_and_writes_numpy_scalars_as_numbers():
    document = {"z": 1, "a": [np.float32(0.5), np.int64(3)], "m": {"k": None, "b": True}}
    blob = json_artifact("result.json", document)
    assert (blob.name, blob.content_type) == ("result.json", "application/json")
    assert blob.data == b'{\n "z": 1,\n "a": [\n  0.5,\n  3\n ],\n "m": {\n  "k": null,\n  "b": true\n }\n}'
    assert json.loads(blob.data) == {"z": 1, "a": [0.5, 3], "m": {"k": None, "b": True}}


def test_png_bytes_pass_through_untouched():
    data = b"\x89PNG\r\n\x1a\n any bytes"
    blob = png_artifact("grid.png", data)
    assert (blob.name, blob.content_type, blob.data) == ("grid.png", "image/png", data)
