"""Indexing image archives and folders, and reading images back through the index, in this
process: every image's bytes come back exactly (against the archive's own reader), labels
follow the ImageFolder and WebDataset rules, hostile entries are refused naming them."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from service.datasets.index import NO_LABEL, DatasetIndex
from service.datasets.ingest import Archive, index_archives
from service.datasets.reader import DataGone, IndexedReader
from service.datasets.sources import Source, index_source
from service.storage import FileBlobStore
from service.uploads import UploadRejected
from tests.e2e.dataset_files import png, png_declaring, tar_info, tar_of, zip_of

RED, GREEN, BLUE = png((255, 0, 0)), png((0, 255, 0), size=(8, 6)), png((0, 0, 255))
FOLDER = {"train/cats/b.png": RED, "train/cats/a.png": GREEN, "train/dogs/c.png": BLUE, "train/README.txt": b"hi"}


def index_of(data: bytes, name: str = "") -> DatasetIndex:
    return index_archives([Archive(name, "", len(data), file=io.BytesIO(data))], {"store": "t/data"})


def reader_for(tmp_path, index: DatasetIndex, blobs: dict[str, bytes]) -> IndexedReader:
    store = FileBlobStore(tmp_path / "blobs")
    for key, data in blobs.items():
        store.put_bytes(key, data)
    return IndexedReader(DatasetIndex.from_bytes(index.to_bytes()), store, [])


@pytest.mark.parametrize("pack", [tar_of, zip_of, lambda e: zip_of(e, zipfile.ZIP_STORED)])
def test_an_archive_is_indexed_in_name_order_with_imagefolder_labels_and_read_back_exactly(tmp_path, pack):
    data = pack(FOLDER)
    index = index_of(data)
    assert index.names == ["train/cats/a.png", "train/cats/b.png", "train/dogs/c.png"]
    assert index.classes == ["cats", "dogs"] and list(index.labels) == [0, 0, 1]
    assert index.summary()["label_counts"] == {"cats": 2, "dogs": 1}
    assert index.skipped == ["train/README.txt"] and index.image_size == [6, 8]
    reader = reader_for(tmp_path, index, {"t/data": data})
    assert reader.read([2, 0, 1]) == [FOLDER[index.names[i]] for i in (2, 0, 1)]
    assert reader.read([]) == []


def test_webdataset_shards_take_their_labels_from_cls_files_in_shard_order(tmp_path):
    first = tar_of({"s/0002.png": GREEN, "s/0002.cls": b"10\n", "s/0001.png": RED, "s/0001.cls": b"2", "s/0001.json": b"{}"})
    second = tar_of({"s/0003.png": BLUE, "s/0003.cls": b"2"})
    archives = [Archive("a.tar", "shard-0.tar", len(first), file=io.BytesIO(first)),
                Archive("b.tar", "shard-1.tar", len(second), file=io.BytesIO(second))]  # fmt: skip
    index = index_archives(archives, {"store": "w"})
    assert index.format == "tar-shards"
    assert index.names == ["a.tar/s/0001.png", "a.tar/s/0002.png", "b.tar/s/0003.png"]
    assert index.classes == ["2", "10"]  # numeric classes in numeric order
    assert list(index.labels) == [0, 1, 0] and index.skipped == ["a.tar/s/0001.json"]
    reader = reader_for(tmp_path, index, {"w/shard-0.tar": first, "w/shard-1.tar": second})
    assert reader.read([0, 1, 2]) == [RED, GREEN, BLUE]


@pytest.mark.parametrize(
    "names, classes",
    [
        (["a.png", "b.png"], None),  # a flat archive
        (["pics/a.png", "pics/b.png"], None),  # one folder holding everything: no classes
        (["pics/a.png", "pics/cats/b.png"], None),  # an image beside the class folders
        (["x/cats/a.png", "x/dogs/deep/b.png"], ["cats", "dogs"]),  # the first folder below x/ names the class
    ],
)
def test_imagefolder_labels_only_when_every_image_lies_in_a_class_folder(names, classes):
    index = index_of(tar_of(dict.fromkeys(names, RED)))
    assert index.classes == classes
    assert list(index.labels) == ([NO_LABEL] * len(names) if classes is None else [0, 1])


def test_reads_of_neighbouring_images_are_joined_and_far_ones_are_not(tmp_path, monkeypatch):
    entries = {f"{i:03d}.png": png((i, 0, 0)) for i in range(20)}
    data = tar_of(entries)
    index = index_of(data)
    reader = reader_for(tmp_path, index, {"t/data": data})
    calls = []
    real = IndexedReader._read_range
    monkeypatch.setattr(IndexedReader, "_read_range", lambda self, m, s, e: calls.append((s, e)) or real(self, m, s, e))
    assert reader.read(range(20)) == [entries[n] for n in sorted(entries)]
    assert len(calls) == 1  # twenty consecutive images of a tar: one read
    calls.clear()
    monkeypatch.setattr("service.datasets.reader.MAX_GAP", 0)
    reader.read([0, 19])
    assert len(calls) == 2


def test_a_compressed_tar_and_unsafe_or_linked_entries_are_refused_naming_them():
    gz = io.BytesIO()
    with tarfile.open(fileobj=gz, mode="w:gz") as archive:
        archive.addfile(tarfile.TarInfo("a.png"), io.BytesIO(b""))
    cases = [
        (gz.getvalue(), "gzip-compressed"),
        (tar_of({"../up.png": RED}), "tar entry '../up.png' has an unsafe path"),
        (tar_of({"/etc/x.png": RED}), "tar entry '/etc/x.png' has an unsafe path"),
        (tar_of([tar_info("ok.png", RED), tar_info("link.png", kind=tarfile.SYMTYPE, link="/etc/passwd")]),
         "tar entry 'link.png' is a symbolic link (to '/etc/passwd')"),
        (tar_of([tar_info("hard.png", kind=tarfile.LNKTYPE, link="ok.png")]), "tar entry 'hard.png' is a hard link"),
        (tar_of([tar_info("dev", kind=tarfile.CHRTYPE)]), "tar entry 'dev' is a character device"),
        (tar_of([tar_info("fifo", kind=tarfile.FIFOTYPE)]), "tar entry 'fifo' is a FIFO"),
        (tar_of({"big.png": png_declaring(6000, 6000)}), "'big.png' has 6000x6000 pixels"),
        (tar_of({"bad.png": RED[:30]}), "tar entry 'bad.png'"),
        (tar_of({"x.png": RED})[:540], "cut short"),
        (zip_of({"zeros.png": bytes(50_000_000)}), "zip bomb"),
        (tar_of({"notes.txt": b"text"}), "holds no PNG or JPEG images (skipped, not images: 'notes.txt')"),
    ]  # fmt: skip
    for data, needle in cases:
        with pytest.raises(UploadRejected) as refused:
            index_of(data)
        assert needle in str(refused.value), (needle, str(refused.value))


def test_a_huge_extended_header_is_refused_before_tarfile_reads_it():
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 2 * 1024 * 1024
    block = header.tobuf(format=tarfile.USTAR_FORMAT)
    data = block + b"0" * header.size + bytes(1024)
    with pytest.raises(UploadRejected, match="extended header .* tar bomb"):
        index_of(data)


def test_a_folder_source_is_indexed_in_place_and_a_link_out_of_the_roots_is_refused(tmp_path):
    root = tmp_path / "root"
    for name, data in FOLDER.items():
        (root / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "set" / name).write_bytes(data)
    store = FileBlobStore(tmp_path / "blobs")
    source = Source("file", str(root / "set"), "file://" + str(root / "set"))
    index = index_source(source, store, [str(root)])
    assert index.format == "files" and index.classes == ["cats", "dogs"]
    reader = IndexedReader(DatasetIndex.from_bytes(index.to_bytes()), store, [str(root)])
    assert reader.read([0, 2]) == [GREEN, BLUE]
    outside = tmp_path / "outside.png"
    outside.write_bytes(RED)
    os.symlink(outside, root / "set" / "train" / "cats" / "z.png")
    with pytest.raises(UploadRejected, match="'train/cats/z.png' is a symbolic link leading out of the allowed roots"):
        index_source(source, store, [str(root)])
    # A file swapped for a link out after indexing is not read either.
    os.remove(root / "set" / "train" / "cats" / "z.png")
    os.remove(root / "set" / "train" / "cats" / "a.png")
    os.symlink(outside, root / "set" / "train" / "cats" / "a.png")
    with pytest.raises(DataGone, match="no longer under an allowed dataset root"):
        reader.read([0])
