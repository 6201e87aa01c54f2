"""An upload's multipart/form-data body, read (what openai-python's `files.create` sends: `file` and `purpose`)
and written again for Qwen after the file's lines were translated."""

from __future__ import annotations

import email.parser
import email.policy
import uuid

from ...errors import GatewayError

Fields = dict[str, tuple[str | None, bytes]]  # field name -> (file name, bytes)


def parse(content_type: str, raw: bytes) -> Fields:
    """The form's fields. Raises GatewayError 400 (OpenAI's words) for a body that is no multipart form."""
    if "multipart/form-data" not in content_type.lower() or "boundary=" not in content_type.lower():
        raise GatewayError(400, "Files are uploaded as multipart/form-data with the fields 'file' and 'purpose'.",
                           param="file", code="invalid_request_body")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    out: Fields = {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return out


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
        parts.append(head.encode() + b"\r\n" + data + b"\r\n")
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def _quoted(name: str) -> str:
    return "".join(c for c in name if c not in '"\r\n\\')
