"""Model Studio's OpenAI-compatible Files API on pay-as-you-go's base: `POST /compatible-mode/v1/files` (multipart
`file` and `purpose`), `GET …/files` (list), `GET …/files/{id}`, `GET …/files/{id}/content`, `DELETE …/files/{id}`.

Model Studio's "OpenAI compatible file interface" page (alibabacloud.com/help/en/model-studio/openai-file-interface,
2026-03): "Storage limits are 10,000 files maximum and 100 GB total. Files do not expire"; purposes `file-extract`
(150 MB a file) and `batch` (its Batch page: 500 MB); a third party's summary of the Chinese page adds `fine-tune`
(300 MB). The Batch page: "Only files whose file_id starts with file-batch_output can be downloaded" (results and
errors files alike: a cancelled batch's errors file was `file-batch_output-…` when recorded). The shapes are those
cnblogs/dashscope-sdk recorded from the real service (2025-11): ids `file-fe-<hex>` / `file-batch-<hex>`, objects
`{id, object: "file", bytes, filename, purpose, status: "processed", created_at}`, a list `{object, data, has_more}`
paged by `after`/`limit`, a deletion `{id, object, deleted: true}`. Errors are OpenAI's nested shape, as the real
files API answered one ("'purpose' must be 'file-extract'", param `purpose`, 400); their texts are assumed unless
said. The storage quota's refusal takes the native API's recorded words (`BadRequest.TooMany`, "Out of number, <10>
of <10> files has been uploaded."). Files belong to the key's account (`key_accounts`), as storage does.
Switches scale the limits for tests: `files_max_count`, `files_max_total_bytes`, `batch_file_max_bytes`.
"""

from __future__ import annotations

import email.parser
import email.policy
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl

BASE = "/compatible-mode/v1/files"
MB = 1 << 20
PURPOSES = {"file-extract": ("file-fe", 150 * MB), "batch": ("file-batch", 0), "fine-tune": ("file-ft", 300 * MB)}
OUTPUT_PREFIX = "file-batch_output-"


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code},
                    "request_id": str(uuid.uuid4())}


@dataclass
class File:
    id: str
    owner: str
    filename: str
    purpose: str
    data: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def public(self) -> dict:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "status_details": None}


@dataclass
class FileStore:
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: dict[str, File] = field(default_factory=dict)  # in upload order

    def add(self, f: File) -> None:
        with self.lock:
            self.files[f.id] = f

    def get(self, owner: str, file_id: str) -> File | None:
        with self.lock:
            f = self.files.get(file_id)
            return f if f is not None and f.owner == owner else None

    def remove(self, owner: str, file_id: str) -> bool:
        with self.lock:
            found = self.files.get(file_id)
            if found is None or found.owner != owner:
                return False
            del self.files[file_id]
            return True

    def owned(self, owner: str) -> list[File]:
        with self.lock:
            return [f for f in self.files.values() if f.owner == owner]

    def room(self, owner: str, size: int, sw: dict) -> tuple[int, dict] | None:
        """The account's storage (10,000 files, 100 GB): None if a file of `size` bytes fits."""
        mine = self.owned(owner)
        most, total = int(sw["files_max_count"]), int(sw["files_max_total_bytes"])
        if len(mine) >= most:
            return error(400, f"Out of number, <{len(mine)}> of <{most}> files has been uploaded.", "file",
                         "BadRequest.TooMany")
        if sum(len(f.data) for f in mine) + size > total:
            return error(400, f"Out of storage, the files of the account may hold {total} bytes at most.", "file",
                         "BadRequest.TooMany")  # text assumed, code as the count's
        return None


def output_file(store: FileStore, owner: str, name: str, data: bytes) -> str:
    """A batch's results or errors file (it counts in the account's storage like any file: assumed)."""
    f = File(OUTPUT_PREFIX + uuid.uuid4().hex, owner, name, "batch_output", data)
    store.add(f)
    return f.id


def _form(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data (or urlencoded: no file in it) body: field name -> (filename, bytes)."""
    if "x-www-form-urlencoded" in content_type:
        return {k: (None, v.encode()) for k, v in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)}
    if "multipart/form-data" not in content_type:
        return {}
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            out[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return out


def upload(store: FileStore, owner: str, content_type: str, raw: bytes, sw: dict) -> tuple[int, dict]:
    form = _form(content_type, raw)
    purpose = form.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
    if purpose not in PURPOSES:
        return error(400, f"'purpose' must be one of {', '.join(repr(p) for p in PURPOSES)}", "purpose")
    if "file" not in form:
        return error(400, "Missing required parameter: 'file'.", "file")
    filename, data = form["file"]
    prefix, most = PURPOSES[purpose]
    most = most or int(sw["batch_file_max_bytes"])
    if len(data) > most:
        return error(400, f"The file is too large: a file of purpose '{purpose}' may hold {most} bytes at most.",
                     "file")
    full = store.room(owner, len(data), sw)
    if full:
        return full
    f = File(f"{prefix}-{uuid.uuid4().hex}", owner, filename or "file", purpose, data)
    store.add(f)
    return 200, f.public()


def when(value: str) -> float | None:
    """`create_after` / `create_before`: yyyyMMdd or yyyyMMddHHmmss (as the recorded requests sent them), UTC."""
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def listing(store: FileStore, owner: str, query: dict) -> tuple[int, dict]:
    """Newest first (assumed), `limit` 1–100 (default 20: the Batch list's documented range, assumed here)."""
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        return error(400, "Invalid 'limit': must be between 1 and 100.", "limit")
    files = store.owned(owner)[::-1]
    if query.get("purpose"):
        files = [f for f in files if f.purpose == query["purpose"]]
    after, before = when(query.get("create_after", "")), when(query.get("create_before", ""))
    files = [f for f in files if (after is None or f.created_at >= after) and (before is None or f.created_at <= before)]
    if query.get("after"):
        ids = [f.id for f in files]
        files = files[ids.index(query["after"]) + 1:] if query["after"] in ids else []
    return 200, {"object": "list", "data": [f.public() for f in files[:limit]], "has_more": len(files) > limit}


def route(h, path: str, query: dict, raw: bytes, owner: str, sw: dict) -> None:
    """Answers under BASE for an admitted key's account."""
    store: FileStore = h.state.files
    rest = [p for p in path[len(BASE):].split("/") if p]
    if not rest:
        methods = {"POST": lambda: upload(store, owner, h.headers.get("Content-Type", ""), raw, sw),
                   "GET": lambda: listing(store, owner, query)}
    elif len(rest) == 1:
        methods = {"GET": lambda: found(store.get(owner, rest[0]), rest[0], lambda f: (200, f.public())),
                   "DELETE": lambda: (200, {"id": rest[0], "object": "file", "deleted": True})
                   if store.remove(owner, rest[0]) else not_found(rest[0])}
    elif len(rest) == 2 and rest[1] == "content":
        f = store.get(owner, rest[0])
        if f is not None and f.id.startswith(OUTPUT_PREFIX) and h.command == "GET":
            return h.send_bytes(200, f.data, "application/octet-stream")  # content type assumed
        methods = {"GET": lambda: found(f, rest[0], lambda _: error(
            400, "Only files whose file_id starts with file-batch_output can be downloaded.", "file_id"))}
    else:
        return h.send_json(*error(404, "Not found", None, "NotFound"))
    if h.command not in methods:
        return h.send_bytes(405, b"", None, {"Allow": ", ".join(methods)})
    h.send_json(*methods[h.command]())


def not_found(file_id: str) -> tuple[int, dict]:
    return error(404, f"File with id '{file_id}' not found.", "file_id", "file_not_found")


def found(f: File | None, file_id: str, then) -> tuple[int, dict]:
    return then(f) if f is not None else not_found(file_id)
