"""An upload's multipart/form-data body, read (what openai-python's `files.create` sends: `file` and `purpose`)
and written again for Qwen after the file's lines were translated.

Read by finding the boundary in the bytes (RFC 7578, RFC 2046): each part's head parsed as headers, its content a
slice. Python's email parser read the whole body as text and split it into lines, holding the GIL — and so the
event loop, while it ran in a worker thread — for 177 ms at a stretch on a 30 MB upload."""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import uuid

from ...errors import GatewayError

Fields = dict[str, tuple[str | None, bytes]]  # field name -> (file name, bytes)
_HEADERS = email.parser.HeaderParser(policy=email.policy.HTTP)
WINDOW = 1 << 20  # bytes searched at once for a part's end


def _refused() -> GatewayError:
    return GatewayError(400, "Files are uploaded as multipart/form-data with the fields 'file' and 'purpose'.",
                        param="file", code="invalid_request_body")


def parse(content_type: str, raw: bytes) -> Fields:
    """The form's fields. Raises GatewayError 400 (OpenAI's words) for a body that is no multipart form."""
    boundary = _HEADERS.parsestr(f"Content-Type: {content_type}\r\n\r\n").get_param("boundary")
    if "multipart/form-data" not in content_type.lower() or not isinstance(boundary, str) or not boundary:
        raise _refused()
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    out: Fields = {}
    at = raw.find(delimiter)
    while at >= 0 and raw[at + len(delimiter):at + len(delimiter) + 2] != b"--":  # the last: "--boundary--"
        head_at = raw.find(b"\n", at) + 1
        head_end = raw.find(b"\r\n\r\n", head_at)
        end = _find(raw, b"\r\n" + delimiter, head_end)
        if head_at <= 0 or head_end < 0 or end < 0:
            raise _refused()
        part = _HEADERS.parsestr(raw[head_at:head_end].decode("utf-8", "replace") + "\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            out[name] = (part.get_filename(), _content(part, raw[head_end + 4:end]))
        at = end + 2
    return out


def _find(raw: bytes, needle: bytes, start: int) -> int:
    """`raw.find(needle, start)`, a window of WINDOW bytes at a time: one search of a whole upload holds the GIL
    until it returns."""
    if start < 0:
        return -1
    while start < len(raw):
        found = raw.find(needle, start, start + WINDOW + len(needle))
        if found >= 0:
            return found
        start += WINDOW
    return -1


def _content(part, data: bytes) -> bytes:
    """A part's bytes (base64 decoded when it says so: RFC 7578 deprecates any other transfer encoding)."""
    if str(part.get("content-transfer-encoding", "")).strip().lower() != "base64":
        return data
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)  # lines of 76 characters allowed
    except (binascii.Error, ValueError):
        raise _refused() from None


def text(fields: Fields, name: str) -> str:
    return fields.get(name, (None, b""))[1].decode("utf-8", "replace").strip()


def build(fields: Fields) -> tuple[str, bytes]:
    """(content type, body) of a form holding `fields`, in order."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{_quoted(filename)}"' if filename is not None else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        head += "Content-Type: application/octet-stream\r\n" if filename is not None else ""
        parts += [head.encode(), b"\r\n", data, b"\r\n"]  # joined once: a file is copied once
    return f"multipart/form-data; boundary={boundary}", b"".join([*parts, f"--{boundary}--\r\n".encode()])


def _quoted(name: str) -> str:
    return "".join(c for c in name if c not in '"\r\n\\')
