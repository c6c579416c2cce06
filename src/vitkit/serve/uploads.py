"""Uploaded bytes -> a lazily opened Pillow image, or a :class:`RequestError` naming what is wrong with them.

Every failure a client can cause maps to a 4xx with a short machine-readable code and one sentence saying what
to send instead; nothing here may raise anything else for bad input (a 500 would blame the server).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

from PIL import Image, UnidentifiedImageError

# Pillow's own default guard (about 89.5 MP, a 0.25 GB RGB bitmap); the server's limit is configurable.
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
DEFAULT_MAX_UPLOAD_BYTES = 10 * 2**20


class RequestError(Exception):
    """A request answered with an error: HTTP ``status``, a stable ``code`` for programs, a ``detail`` for people."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


def _over(code: str, what: str, limit: str, advice: str) -> RequestError:
    return RequestError(413, code, f"{what}, over this server's limit of {limit}; {advice}")


def too_large(size: int | None, limit: int) -> RequestError:
    """The 413 for a body over ``limit`` bytes (``size`` when the client announced it)."""
    what = f"the upload is {size} bytes" if size is not None else "the upload is larger"
    return _over("upload_too_large", what, f"{limit} bytes", "send a smaller image (or raise --max-upload-mb)")


def _bomb(pixels: int | None, limit: int) -> RequestError:
    what = f"the image declares {pixels} pixels" if pixels is not None else "the image declares too many pixels"
    return _over("image_too_large", what, f"{limit} pixels (decompression-bomb guard)", "downscale it before sending")


@contextlib.contextmanager
def _bomb_guard(max_pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb warning (over its limit) and error (over twice it) as a 413."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(None, max_pixels) from None


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``data`` lazily (header only) after the checks that need no decoding: empty, not an image, a
    decompression bomb (more than ``max_pixels`` pixels announced). Decoding errors surface in :func:`decoded`."""
    if not data:
        raise RequestError(
            400, "empty_upload", "the upload is empty; send an image file as the multipart field 'file' or as the body"
        )
    try:
        with _bomb_guard(max_pixels):
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as err:
        if _looks_like_image(data):  # the signature is right, the rest is not: a damaged file, not a wrong one
            raise corrupt(err) from None
        raise RequestError(
            415, "not_an_image", "the upload is not an image Pillow can read; send a JPEG, PNG, WebP, GIF or BMP file"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:  # a recognised header that does not parse
        raise corrupt(err) from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise _bomb(width * height, max_pixels)
    return img


# File signatures of the common formats (PNG, JPEG, GIF, BMP, WebP, TIFF), to tell damaged images from non-images.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def corrupt(err: BaseException) -> RequestError:
    """The 400 for an image whose header reads but whose data does not decode (truncated, damaged)."""
    return RequestError(
        400, "corrupt_image", f"the image could not be decoded ({err}); the file is damaged or truncated, send it again"
    )


def decoded(data: bytes, max_pixels: int, transform) -> object:
    """``transform(image)`` on the upload, turning every decoding failure into an :class:`RequestError`.

    The transform receives the lazily opened image, exactly as ``vitkit predict`` does with a file, so JPEG
    draft-mode decoding (and hence every pixel) is the same for both.
    """
    img = open_image(data, max_pixels)
    try:
        with _bomb_guard(max_pixels):
            return transform(img)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise corrupt(err) from None
    finally:
        img.close()
