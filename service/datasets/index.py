"""A dataset's index: for every image its name, class label and where its bytes are, so that a
job reads any image with one ranged read instead of scanning the archive.

Written once, at upload or registration, as a gzipped JSON blob next to the data
(`<prefix>/index.json.gz`) and never changed. Columns rather than one object per image: an
index of a million images is a few lists, small in memory (numbers in `array`s) and in gzip.

Where the bytes are: `root` names the data, `{"store": key-or-prefix}` in the blob store or
`{"path": "/absolute"}` under an allowed dataset root; `members` are the archives under the
root (`""`: the root is itself the archive; `None`: the "files" layout, where every image is a
file of its own whose path under the root is its name). Image i is
`members[member[i]][offset[i] : offset[i] + size[i]]`, stored or deflated (`method`, zips only,
with `raw_size` and `crc` to check it).
"""

from __future__ import annotations

import gzip
import json
from array import array
from dataclasses import dataclass, field
from typing import Any

from service.datasets.archives import Member

INDEX_VERSION = 1
INDEX_NAME = "index.json.gz"
FORMATS = ("zip", "tar", "tar-shards", "files")
NO_LABEL = -1


def _column(values: Any = ()) -> array:
    return array("q", values)


@dataclass
class DatasetIndex:
    format: str
    root: dict[str, str]
    members: list[str] | None
    names: list[str] = field(default_factory=list)
    member: array = field(default_factory=_column)
    offset: array = field(default_factory=_column)
    size: array = field(default_factory=_column)
    labels: array = field(default_factory=_column)  # class index per image, NO_LABEL for none
    classes: list[str] | None = None
    # zip only (empty otherwise): how each image is stored
    method: array = field(default_factory=_column)
    raw_size: array = field(default_factory=_column)
    crc: array = field(default_factory=_column)
    image_size: list[int] | None = None  # [H, W] when every image has it
    skipped: list[str] = field(default_factory=list)  # the first ones left out, as not images
    skipped_count: int = 0

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, member_index: int, member: Member) -> None:
        self.names.append(name)
        self.member.append(member_index)
        self.offset.append(member.offset)
        self.size.append(member.size)
        if self.format == "zip":
            self.method.append(member.method)
            self.raw_size.append(member.content_size)
            self.crc.append(member.crc)

    def entry(self, index: int) -> Member:
        """Where image `index` is, in its member."""
        if self.format == "zip":
            return Member(self.names[index], self.offset[index], self.size[index], self.method[index],
                          self.raw_size[index], self.crc[index])  # fmt: skip
        return Member(self.names[index], self.offset[index], self.size[index])

    def member_path(self, index: int) -> str:
        """The path under `root` of the member that holds image `index` ("" = the root)."""
        return self.names[index] if self.members is None else self.members[self.member[index]]

    def label_counts(self) -> dict[str, int] | None:
        if not self.classes:
            return None
        counts = [0] * len(self.classes)
        for label in self.labels:
            if label != NO_LABEL:
                counts[label] += 1
        return dict(zip(self.classes, counts))

    def to_bytes(self) -> bytes:
        document = {
            "version": INDEX_VERSION,
            "format": self.format,
            "root": self.root,
            "members": self.members,
            "classes": self.classes,
            "image_size": self.image_size,
            "skipped": self.skipped,
            "skipped_count": self.skipped_count,
            "entries": {
                "name": self.names,
                "member": self.member.tolist(),
                "offset": self.offset.tolist(),
                "size": self.size.tolist(),
                "label": self.labels.tolist(),
                **({"method": self.method.tolist(), "raw_size": self.raw_size.tolist(), "crc": self.crc.tolist()}
                   if self.format == "zip" else {}),
            },  # fmt: skip
        }
        return gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=6, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> DatasetIndex:
        document = json.loads(gzip.decompress(data))
        if document.get("version") != INDEX_VERSION or document.get("format") not in FORMATS:
            raise ValueError(f"not a dataset index of version {INDEX_VERSION}")
        entries = document["entries"]
        return cls(
            format=document["format"],
            root=document["root"],
            members=document["members"],
            names=entries["name"],
            member=_column(entries["member"]),
            offset=_column(entries["offset"]),
            size=_column(entries["size"]),
            labels=_column(entries["label"]),
            classes=document["classes"],
            method=_column(entries.get("method", ())),
            raw_size=_column(entries.get("raw_size", ())),
            crc=_column(entries.get("crc", ())),
            image_size=document["image_size"],
            skipped=document["skipped"],
            skipped_count=document["skipped_count"],
        )

    def summary(self) -> dict[str, Any]:
        """What the dataset record says of its images."""
        return {
            "count": len(self),
            "format": self.format,
            "image_size": self.image_size,
            "labels": self.classes,
            "label_counts": self.label_counts(),
            "skipped": self.skipped,
            "skipped_count": self.skipped_count,
        }
