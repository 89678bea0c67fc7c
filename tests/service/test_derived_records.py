"""Derived records (activation indexes, atlas folders, MACO spectra) on a real Redis: a record
keeps its files' prefix out of the sweep, a replacement gives the old prefix to the sweep, and
deleting a model or a dataset deletes exactly the records derived from it."""

from __future__ import annotations

import redis

from service.atlases import AtlasCache
from service.blob_leases import BlobLeases
from service.indexes import IndexCatalog
from service.keys import Keys
from service.spectra import SpectrumCatalog

KEYS = Keys("derived-test")


def due(connection: redis.Redis) -> set[str]:
    return set(BlobLeases(connection, KEYS).due(now=1.0))


def test_a_record_keeps_its_prefix_and_a_replacement_releases_the_old_one(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.delete(KEYS.blob_leases, f"{KEYS.ns}:indexes:t")
    indexes = IndexCatalog(connection, KEYS)
    indexes.leases.hold("indexes/t/i1/a", 600)
    indexes.publish("t", {"id": "i1", "model": "m", "dataset": "d", "layer": "l", "prefix": "indexes/t/i1/a"})
    assert connection.zscore(KEYS.blob_leases, "indexes/t/i1/a") is None  # kept: no lease
    indexes.publish("t", {"id": "i1", "model": "m", "dataset": "d", "layer": "l", "prefix": "indexes/t/i1/b"})
    assert due(connection) == {"indexes/t/i1/a"} and indexes.get("t", "i1")["prefix"] == "indexes/t/i1/b"
    assert indexes.delete("t", "i1") and not indexes.delete("t", "i1")
    assert due(connection) == {"indexes/t/i1/a", "indexes/t/i1/b"} and indexes.get("t", "i1") is None


def test_deleting_a_model_or_a_dataset_deletes_what_derives_from_it(redis_url):
    connection = redis.Redis.from_url(redis_url)
    for collection in ("indexes", "atlases", "spectra"):
        connection.delete(f"{KEYS.ns}:{collection}:t")
    connection.delete(KEYS.blob_leases)
    indexes, atlases, spectra = (
        IndexCatalog(connection, KEYS),
        AtlasCache(connection, KEYS),
        SpectrumCatalog(connection, KEYS),
    )
    for number, (model, dataset) in enumerate([("m1", "d1"), ("m1", "d2"), ("m2", "d1")]):
        indexes.publish(
            "t", {"id": f"i{number}", "model": model, "dataset": dataset, "layer": "l", "prefix": f"i/{number}"}
        )
        atlases.folder("t", f"a{number}", model=model, dataset=dataset, layer="l")
    for number, dataset in enumerate(["d1", "d2"]):
        spectra.publish("t", {"id": f"s{number}", "dataset": dataset, "prefix": f"s/{number}"})  # no model

    assert indexes.delete_for("t", model="m1") == 2 and [r["id"] for r in indexes.records("t")] == ["i2"]
    assert atlases.delete_for("t", dataset="d1") == 2 and [r["key"] for r in atlases.records("t")] == ["a1"]
    assert spectra.delete_for("t", model="m1") == 0 and spectra.delete_for("t", dataset="d1") == 1
    assert [r["id"] for r in spectra.records("t")] == ["s1"]
    assert due(connection) == {"i/0", "i/1", "atlases/t/a0", "atlases/t/a2", "s/0"}
    # an atlas folder's record is written once: a second job of the same atlas keeps the first
    first = atlases.records("t")[0]["created_at"]
    atlases.folder("t", "a1", model="m1", dataset="d2", layer="l")
    assert atlases.records("t")[0]["created_at"] == first
