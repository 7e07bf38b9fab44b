"""Reading a request's images within the server's limits: size, count and time.

An upload is read as it arrives, never all at once: a part that grows past the size limit, a
request with one image too many, or an upload that has not ended by the deadline is refused at
that moment with a 4xx, and the rest is never read. Parts are kept in spooled temporary files:
in memory up to SPOOL_BYTES, then in an unnamed file in the system's temporary folder, which
disappears when it is closed. Nothing a client sends names a file the server opens.
"""
import asyncio
import tempfile
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

SPOOL_BYTES = 1024 * 1024
RAW_TYPES = (b"application/octet-stream",)  # beside image/*


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 16 * 1024 * 1024  # one image
    max_images: int = 32  # per request
    upload_timeout: float = 30.0  # seconds for a whole request body to arrive

    @property
    def max_body_bytes(self):
        """A whole request: every image at its limit, with room for the multipart headers."""
        return self.max_images * (self.max_upload_bytes + 16 * 1024) + 64 * 1024

    def to_dict(self):
        return {"max_upload_bytes": self.max_upload_bytes, "max_images": self.max_images,
                "upload_timeout_seconds": self.upload_timeout}


def megabytes(count):
    return f"{count / 2**20:g} MB"


class Upload:
    """One image as sent: the client's name for it and its bytes, spooled."""

    def __init__(self, name):
        self.name = name
        self.size = 0
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)

    def write(self, data, limits):
        self.size += len(data)
        if self.size > limits.max_upload_bytes:
            raise RequestError(413, self.too_large(limits))
        self.file.write(data)

    def too_large(self, limits):
        return f"image {self.name} is larger than {megabytes(limits.max_upload_bytes)} (the server's --max-upload-mb)"

    def read(self):
        self.file.seek(0)
        return self.file.read()

    def close(self):
        self.file.close()


async def _body(request, limit, timeout, too_large):
    """The request body's chunks as they arrive, refused past limit bytes (with the message
    too_large) or past the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    received = 0
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            raise RequestError(408, f"the upload did not arrive within {timeout:g} s (the server's "
                                    "--upload-timeout)") from None
        if message["type"] == "http.disconnect":
            raise RequestError(400, "the client closed the connection before the upload ended")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise RequestError(413, too_large)
        yield chunk
        if not message.get("more_body", False):
            return


def _declared_length(request, limit, too_large):
    value = request.headers.get("content-length")
    if value is not None and value.isdigit() and int(value) > limit:
        raise RequestError(413, too_large)


def _leaf(name):
    """The last part of a file name as a browser or client sent it (some send a whole path)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


class _Parts:
    """python-multipart's callbacks: every file part into an Upload, within the limits."""

    def __init__(self, limits, name_of):
        self.limits = limits
        self.name_of = name_of  # (client's file name or None, index) -> the name to show
        self.uploads = []
        self.current = None
        self.ended = False
        self._headers = {}
        self._field = b""
        self._value = b""

    def callbacks(self):
        return {"on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data,
                "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished,
                "on_end": self.on_end}

    def on_part_begin(self):
        self._headers = {}
        self.current = None

    def on_header_field(self, data, start, end):
        self._field += data[start:end]

    def on_header_value(self, data, start, end):
        self._value += data[start:end]

    def on_header_end(self):
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self):
        _, options = parse_options_header(self._headers.get(b"content-disposition", b"").decode("latin-1"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            raise RequestError(400, f"the form field {name!r} is not a file: send each image as a file part")
        if len(self.uploads) == self.limits.max_images:
            raise RequestError(413, f"more than {self.limits.max_images} images in one request (the server's "
                                    "--max-images)")
        filename = _leaf(options[b"filename"].decode("utf-8", "replace"))
        self.current = Upload(self.name_of(filename, len(self.uploads)))
        self.uploads.append(self.current)

    def on_part_data(self, data, start, end):
        self.current.write(data[start:end], self.limits)

    def on_end(self):
        self.ended = True


async def read_uploads(request, limits, name_of, raw_name=None):
    """The images of a request, as Uploads: the file parts of multipart/form-data, or the whole
    body of an image/* or application/octet-stream request as one image named name_of(raw_name, 0).
    The caller closes them."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise RequestError(400, "the multipart/form-data request has no boundary in its Content-Type")
        too_large = (f"the request is larger than {megabytes(limits.max_body_bytes)}, the server's --max-images "
                     "images at its --max-upload-mb")
        _declared_length(request, limits.max_body_bytes, too_large)
        parts = _Parts(limits, name_of)
        try:
            parser = MultipartParser(boundary, parts.callbacks())
            async for chunk in _body(request, limits.max_body_bytes, limits.upload_timeout, too_large):
                parser.write(chunk)
            parser.finalize()
            if not parts.ended:
                raise RequestError(400, "the multipart body ends before its closing boundary (a cut-off upload?)")
        except FormParserError as err:
            _close(parts.uploads)
            raise RequestError(400, f"the multipart body cannot be read: {err}") from None
        except BaseException:  # a refusal, or the request cancelled: the spooled files go either way
            _close(parts.uploads)
            raise
        if not parts.uploads:
            raise RequestError(400, "the request holds no image: send files as multipart/form-data parts")
        return parts.uploads
    if content_type.startswith(b"image/") or content_type in RAW_TYPES:
        upload = Upload(name_of(raw_name, 0))
        too_large = upload.too_large(limits)
        try:
            _declared_length(request, limits.max_upload_bytes, too_large)
            async for chunk in _body(request, limits.max_upload_bytes, limits.upload_timeout, too_large):
                upload.write(chunk, limits)
        except BaseException:
            upload.close()
            raise
        return [upload]
    shown = content_type.decode("latin-1") or "none"
    raise RequestError(415, f"cannot read images from a request of Content-Type {shown}: send multipart/form-data "
                            "with image files, or one image's bytes as image/* or application/octet-stream")


def _close(uploads):
    for upload in uploads:
        upload.close()
