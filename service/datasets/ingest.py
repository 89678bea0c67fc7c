"""Indexing a dataset once: archives (a zip, a tar, tar shards) or a folder of image files in,
a `DatasetIndex` out, every image checked on the way (PNG or JPEG, at most 25 Mpx, readable
to its end) and every hostile entry refused naming it.

Two passes: the first lists the entries (where the archive guards refuse bombs, links and
climbing paths before any entry is read whole) and sorts them into images, `.cls` label files
and the rest (skipped, listed); the second reads each image once to check it.

Which entries are images: a picture's extension, or PNG/JPEG bytes under any name; hidden
files and `__MACOSX/` forks never are. Image order: file-name order (within each shard, shards
in the order given). Class labels, per image:
- WebDataset: `<key>.cls` beside `<key>.png` (the key is the path up to the first dot of the
  file name) holds the class, as text (`7`, `tabby cat`);
- else ImageFolder: below the folder all images share, the first folder names the class
  (`cats/1.png`, `dogs/2.png`; `train/cats/1.png` too). An image lying directly in the shared
  folder means the dataset has no labels (a plain folder of images).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, NamedTuple

from service.datasets.archives import MAX_IMAGE_BYTES, Member, Peek, archive_kind, iter_tar, iter_zip, read_member
from service.datasets.index import NO_LABEL, DatasetIndex
from service.uploads import MAX_SKIPPED_LISTED, UploadRejected, check_image_header, listed

MAX_DATASET_IMAGES = 2_000_000
MAX_LABEL_BYTES = 256
LABEL_EXTENSION = ".cls"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
PROGRESS_EVERY = 64

# (images checked, images in all): called during the checking pass; may raise to stop it.
Progress = Callable[[int, int], None]


@dataclass
class Archive:
    """One archive of a dataset: open already (`file`, left open), or opened when needed
    (`opener`, closed after), so that a dataset of thousands of shards holds one open at a time."""

    name: str  # shown before its entries' names when the dataset has several
    path: str  # where it is under the index's root ("" when the root is the archive)
    size: int
    file: IO[bytes] | None = None
    opener: Callable[[], IO[bytes]] | None = None

    @contextlib.contextmanager
    def opened(self) -> Iterator[IO[bytes]]:
        if self.file is not None:
            yield self.file
            return
        assert self.opener is not None
        with self.opener() as file:
            yield file


class Candidate(NamedTuple):
    name: str  # as the dataset shows it
    inner: str  # the entry's path inside its archive (or under the root)
    member_index: int
    member: Member
    label: str  # how errors name it


@dataclass
class Listing:
    images: list[Candidate]
    label_texts: dict[tuple[int, str], str]
    skipped: list[str]


def sample_key(path: str) -> str:
    """WebDataset's key: the path up to the first dot of the file name."""
    folder, _, base = path.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{folder}/{stem}" if folder else stem


def classify(name: str, peek: Peek) -> str:
    """Whether an entry is an `image`, a `label` file, or to `skip`."""
    base = name.rsplit("/", 1)[-1]
    if name.startswith("__MACOSX/") or base.startswith("."):
        return "skip"  # macOS resource forks and hidden files, whatever their extension
    suffix = PurePosixPath(base).suffix.lower()
    if suffix == LABEL_EXTENSION:
        return "label"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return "image" if peek(8).startswith(IMAGE_MAGIC) else "skip"


def _take(listing: Listing, candidate: Candidate, peek: Peek) -> None:
    what = classify(candidate.inner, peek)
    if what == "skip":
        listing.skipped.append(candidate.name)
        return
    if candidate.member.content_size > (MAX_LABEL_BYTES if what == "label" else MAX_IMAGE_BYTES):
        limit = MAX_LABEL_BYTES if what == "label" else MAX_IMAGE_BYTES
        raise UploadRejected(f"{candidate.label} has {candidate.member.content_size} bytes; at most {limit}")
    if what == "image":
        listing.images.append(candidate)
        return
    try:
        text = peek(MAX_LABEL_BYTES).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UploadRejected(f"{candidate.label} is a class label that is not UTF-8 text") from exc
    if not text:
        raise UploadRejected(f"{candidate.label} is an empty class label")
    listing.label_texts[(candidate.member_index, sample_key(candidate.inner))] = text


def index_archives(archives: Sequence[Archive], root: dict[str, str], *, progress: Progress | None = None) -> DatasetIndex:
    listing = Listing([], {}, [])
    kinds = []
    for number, archive in enumerate(archives):
        where = f" of {archive.name!r}" if len(archives) > 1 else ""
        with archive.opened() as file:
            kind = archive_kind(file, archive.name or archive.path)
            if kind is None:
                raise UploadRejected(f"{archive.name or archive.path or 'the file'} is not a zip or tar archive")
            if len(archives) > 1 and kind == "zip":
                raise UploadRejected(
                    f"{archive.name!r} is a zip: several files make a dataset of tar shards only (WebDataset); "
                    "send one zip on its own"
                )
            kinds.append(kind)
            entries = iter_zip if kind == "zip" else iter_tar
            for member, peek in entries(file, archive.size, where):
                name = f"{archive.name}/{member.name}" if len(archives) > 1 else member.name
                label = f"{kind} entry {member.name!r}{where}"
                _take(listing, Candidate(name, member.name, number, member, label), peek)
    layout = kinds[0] if len(archives) == 1 else "tar-shards"
    if not listing.images:
        what = f"the {layout} archive" if len(archives) == 1 else "the tar shards"
        raise UploadRejected(f"{what} holds no PNG or JPEG images{_skipped_note(listing.skipped)}")
    index = DatasetIndex(layout, root, [a.path for a in archives])
    with contextlib.ExitStack() as current:
        open_file: list = [None, None]  # (member index, file): the images come archive by archive

        def read(candidate: Candidate) -> bytes:
            if open_file[0] != candidate.member_index:
                current.close()
                open_file[:] = candidate.member_index, current.enter_context(archives[candidate.member_index].opened())
            return read_member(open_file[1], candidate.member, candidate.label)

        return _checked(index, listing, read, progress)


@dataclass(frozen=True)
class ImageFile:
    path: str  # relative POSIX path under the root
    size: int


def index_files(
    files: Iterable[ImageFile],
    root: dict[str, str],
    read_file: Callable[[str, int], bytes],
    *,
    progress: Progress | None = None,
) -> DatasetIndex:
    """A folder of image files (in the store or under a dataset root): each file is an image,
    a `.cls` label, or skipped. `read_file(path, limit)` reads at most `limit` bytes of one."""
    listing = Listing([], {}, [])
    for file in files:
        member = Member(file.path, 0, file.size)
        candidate = Candidate(file.path, file.path, 0, member, f"file {file.path!r}")
        _take(listing, candidate, lambda count, path=file.path: read_file(path, count))
    if not listing.images:
        raise UploadRejected(f"the folder holds no PNG or JPEG images{_skipped_note(listing.skipped)}")
    index = DatasetIndex("files", root, None)

    def read(candidate: Candidate) -> bytes:
        data = read_file(candidate.inner, candidate.member.size + 1)
        if len(data) != candidate.member.size:
            raise UploadRejected(f"{candidate.label} changed while it was being indexed")
        return data

    return _checked(index, listing, read, progress)


def _skipped_note(skipped: list[str]) -> str:
    return f" (skipped, not images: {listed(skipped)})" if skipped else ""


def _checked(
    index: DatasetIndex, listing: Listing, read: Callable[[Candidate], bytes], progress: Progress | None
) -> DatasetIndex:
    images = listing.images
    if len(images) > MAX_DATASET_IMAGES:
        raise UploadRejected(f"{len(images)} images; at most {MAX_DATASET_IMAGES} per dataset")
    images.sort(key=lambda c: (c.member_index, c.inner))
    sizes = set()
    for number, candidate in enumerate(images):
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(number, len(images))
        width, height = check_image_header(read(candidate), candidate.label, verify=True)
        sizes.add((height, width))
        index.add(candidate.name, candidate.member_index, candidate.member)
    index.image_size = list(next(iter(sizes))) if len(sizes) == 1 else None
    index.classes, labels = class_labels(images, listing.label_texts)
    index.labels.extend(labels)
    index.skipped = listing.skipped[:MAX_SKIPPED_LISTED]
    index.skipped_count = len(listing.skipped)
    return index


def class_labels(
    images: Sequence[Candidate], label_texts: dict[tuple[int, str], str]
) -> tuple[list[str] | None, list[int]]:
    """(class names, each image's class index or NO_LABEL); (None, all NO_LABEL) without labels."""
    if label_texts:
        texts = [label_texts.get((c.member_index, sample_key(c.inner))) for c in images]
    else:
        folders = [c.inner.split("/")[:-1] for c in images]
        shared = _common_prefix(folders)
        if any(len(folder) == shared for folder in folders):
            return None, [NO_LABEL] * len(images)
        texts = [folder[shared] for folder in folders]
    present = {t for t in texts if t is not None}
    if not present:
        return None, [NO_LABEL] * len(images)
    numeric = all(t.lstrip("-").isdigit() for t in present)
    classes = sorted(present, key=int) if numeric else sorted(present)
    position = {name: number for number, name in enumerate(classes)}
    return classes, [NO_LABEL if t is None else position[t] for t in texts]


def _common_prefix(folders: list[list[str]]) -> int:
    """How many leading folders every path shares."""
    first = folders[0]
    length = len(first)
    for folder in folders[1:]:
        length = min(length, len(folder))
        for depth in range(length):
            if folder[depth] != first[depth]:
                length = depth
                break
    return length
