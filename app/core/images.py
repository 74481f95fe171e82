"""Image files: finding them, reading their size, loading their pixels, each with a clear error.

Pixels come from OpenCV (``cv2.imdecode`` of the file's bytes, which also copes with non-ASCII paths on
Windows), never from Qt, so no QImageReader allocation limit applies; OpenCV's own limit (2**30 pixels
unless ``OPENCV_IO_MAX_IMAGE_PIXELS`` is set before start) is named in the error when an image exceeds it.
EXIF orientation is ignored on purpose: annotations (COCO's, pycocotools') are made on the stored pixel
grid, so the pixels we show must be that grid.

OpenCV cannot read a size without decoding, so ``probe_image_size`` reads PNG and JPEG headers itself
(checking 20k images' sizes must not decode 20k images) and decodes only other formats; ``check_image_file``
adds a look at the file's last bytes, which tells a truncated JPEG or PNG.
"""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import IO, Iterable

import cv2
import numpy as np

from app.core.errors import DatasetError, read_input
from app.core.records import ImageRecord
from app.core.report import ImportReport

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: every PNG's last 8 bytes
_TAIL = 64  # bytes read from an image's end
_PADDING = b"\x00\r\n\t "  # what some writers append after the end marker; harmless


def read_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array (grey, 16-bit and alpha images converted)."""
    data = read_input(path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DatasetError(path, _undecodable_reason(data))
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_unchanged(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file as stored: grey or colour, 8 or 16 bit (mask and label-map PNGs)."""
    data = read_input(path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DatasetError(path, _undecodable_reason(data))
    return image


def probe_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image file: from the header for PNG and JPEG, by decoding for other formats."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(32)
            size = _png_size(head) if head.startswith(_PNG_SIGNATURE) else None
            if size is None and head.startswith(b"\xff\xd8"):
                f.seek(2)
                size = _jpeg_size(f)
    except FileNotFoundError:
        raise DatasetError(path, f"image file not found ({path})") from None
    except IsADirectoryError:
        raise DatasetError(path, "is a folder, not an image file") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read: {e.strerror or e}") from None
    if size is not None:
        return size
    height, width = read_image_unchanged(path).shape[:2]
    return width, height


def check_image_file(path: str | os.PathLike[str]) -> tuple[tuple[int, int], str | None]:
    """(width, height) of an image file as ``probe_image_size`` reads it, and what is wrong with its end:
    a JPEG must end with its end-of-image marker and a PNG with its IEND chunk. A truncated file lacks them,
    and its header alone looks fine (OpenCV even decodes a truncated JPEG without an error, grey below the
    cut), so the last bytes are read too: one seek, not a decode."""
    size = probe_image_size(path)
    return size, _truncation(Path(path))


def _truncation(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(8)
            f.seek(max(0, os.fstat(f.fileno()).st_size - _TAIL), io.SEEK_SET)
            tail = f.read(_TAIL).rstrip(_PADDING)
    except OSError:
        return None
    if head.startswith(b"\xff\xd8") and not tail.endswith(b"\xff\xd9"):
        return "JPEG ends before its end-of-image marker: truncated, or extra bytes follow it"
    if head.startswith(_PNG_SIGNATURE) and not tail.endswith(_PNG_END):
        return "PNG ends before its IEND chunk: truncated, or extra bytes follow it"
    return None


def link_problem(path: Path) -> str | None:
    """What is wrong with ``path`` if it is a symbolic link that leads nowhere (it loops, or its target is
    missing); None for anything else. ``Path.is_file`` is simply False for those, which would make a looping
    link look like a missing file, or not be noticed at all in a folder listing."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link that loops (it leads back to itself)"
        if e.errno == errno.ENOENT:
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return f"is a symbolic link that cannot be followed ({e.strerror})"
    return None


def find_image_file(images_dir: str | os.PathLike[str], image: ImageRecord) -> Path | None:
    """The file of an image under ``images_dir``: its ``file_name`` as given, then its base name, then the
    base name of an LVIS/COCO ``coco_url``; None when none exists."""
    return next((p for p in _candidates(Path(images_dir), image) if p.is_file()), None)


def _candidates(root: Path, image: ImageRecord) -> list[Path]:
    candidates = [root / image.file_name, root / Path(image.file_name).name]
    url = image.extra.get("coco_url")
    if isinstance(url, str) and url:
        candidates.append(root / url.rsplit("/", 1)[-1])
    return candidates


MISSING_IMAGES = "image files not found"
"""The import report's count of images whose file is not where the records say."""


def check_image_files(images: Iterable[ImageRecord], images_dir: str | os.PathLike[str], report: ImportReport) -> None:
    """Report images whose file is missing, unreadable, or of another size than the record says.

    The records are kept either way (the files may be fixed or found later); only headers are read.
    """
    for image in images:
        record = f"image {image.id}"
        path = find_image_file(images_dir, image)
        if path is None:
            links = ((p, problem) for p in _candidates(Path(images_dir), image) if (problem := link_problem(p)))
            link = next(links, None)
            if link is not None:
                report.add(link[1], record=record, action="kept", file=str(link[0]))
            else:
                report.add(f"image file {image.file_name!r} not found under {images_dir}", record=record, action="kept")
            report.counts[MISSING_IMAGES] += 1
            continue
        try:
            (width, height), truncated = check_image_file(path)
        except DatasetError as e:
            report.add(e.problem, record=record, action="kept", file=str(path))
            continue
        if truncated is not None:
            report.add(truncated, record=record, action="kept", file=str(path))
        if (width, height) != (image.width, image.height):
            report.add(
                f"image file is {width}x{height} but the annotations say {image.width}x{image.height}",
                record=record, action="kept", file=str(path),
            )


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return (width, height) if width > 0 and height > 0 else None


def _jpeg_size(f: IO[bytes]) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first start-of-frame; None if the stream ends or looks wrong."""
    while True:
        if f.read(1) != b"\xff":
            return None
        marker = f.read(1)
        while marker == b"\xff":
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_STANDALONE:
            continue
        if code in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length_bytes = f.read(2)
        if len(length_bytes) < 2 or int.from_bytes(length_bytes, "big") < 2:
            return None
        length = int.from_bytes(length_bytes, "big")
        if code in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            return (width, height) if width > 0 and height > 0 else None
        f.seek(length - 2, io.SEEK_CUR)


def max_image_pixels() -> int:
    """The most pixels an image may have here: OpenCV's decoding limit (``OPENCV_IO_MAX_IMAGE_PIXELS``,
    2**30 unless set). A mask or label map of a larger image is refused too: such an image could not be
    opened, and its masks alone would take several bytes per pixel of memory."""
    try:
        return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    except ValueError:
        return 1 << 30


def _undecodable_reason(data: bytes) -> str:
    limit = max_image_pixels()
    size = _png_size(data[:32]) if data.startswith(_PNG_SIGNATURE) else None
    if size is None and data.startswith(b"\xff\xd8"):
        size = _jpeg_size(io.BytesIO(data[2:]))
    if size is not None and size[0] * size[1] > limit:
        return (
            f"image is {size[0]}x{size[1]}, above OpenCV's limit of {limit} pixels (set the environment "
            "variable OPENCV_IO_MAX_IMAGE_PIXELS higher before starting)"
        )
    return "not a readable image (corrupt, or a format OpenCV cannot decode)"
