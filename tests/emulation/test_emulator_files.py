"""Model Studio's OpenAI-compatible Files API on the emulator (scripts/emulator/files.py), as its "OpenAI compatible
file interface" and Batch pages document it (10,000 files / 100 GB an account, a batch file at most 500 MB, only
batch results downloadable) and as cnblogs/dashscope-sdk recorded its answers (2025-11, 2026-04)."""

from __future__ import annotations

import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from emulation.test_emulator import API_KEY, SEED, emulator_fixtures

pytestmark = pytest.mark.e2e  # starts emulator processes

OTHER_KEY = "sk-emulator-other-account"
BASE = "/compatible-mode/v1"
LINE = b'{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus","messages":[]}}\n'

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY, "--api-key", OTHER_KEY, "--seed-token", SEED)


def client(emu, key: str = API_KEY) -> OpenAI:
    return OpenAI(base_url=emu.url + BASE, api_key=key, max_retries=0, http_client=emu.http)


def upload(emu, data: bytes = LINE, purpose: str = "batch", key: str = API_KEY, name: str = "in.jsonl"):
    return emu.http.post(BASE + "/files", headers={"Authorization": f"Bearer {key}"},
                         files={"file": (name, data, "application/octet-stream")}, data={"purpose": purpose})


def error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def test_upload_retrieve_list_and_delete_with_the_openai_sdk(emu):
    c = client(emu)
    f = c.files.create(file=("in.jsonl", LINE), purpose="batch")
    assert f.id.startswith("file-batch-") and f.object == "file" and f.bytes == len(LINE)
    assert f.filename == "in.jsonl" and f.purpose == "batch" and f.status == "processed"
    assert c.files.retrieve(f.id).model_dump(exclude_none=True) == f.model_dump(exclude_none=True)
    assert [x.id for x in c.files.list()] == [f.id]
    doc = upload(emu, b"a document", purpose="file-extract", name="doc.txt").json()
    assert doc["id"].startswith("file-fe-")
    assert c.files.delete(f.id).deleted is True
    with pytest.raises(NotFoundError):
        c.files.retrieve(f.id)
    assert error(emu.http.delete(f"{BASE}/files/{f.id}", headers={"Authorization": f"Bearer {API_KEY}"}), 404)


def test_an_uploaded_file_is_not_downloadable(emu):
    f = client(emu).files.create(file=("in.jsonl", LINE), purpose="batch")
    with pytest.raises(BadRequestError, match="file-batch_output"):
        client(emu).files.content(f.id)  # "Only files whose file_id starts with file-batch_output can be downloaded"


def test_purpose_and_size_are_checked(emu):
    assert error(upload(emu, purpose="assistants"), 400)["param"] == "purpose"
    assert error(emu.http.post(BASE + "/files", headers={"Authorization": f"Bearer {API_KEY}"},
                               data={"purpose": "batch"}), 400)["param"] == "file"
    emu.switches(batch_file_max_bytes=len(LINE))  # 500 MB, as a test can afford it
    assert upload(emu, LINE).status_code == 200
    too_big = error(upload(emu, LINE + b" "), 400)
    assert too_big["param"] == "file" and "batch" in too_big["message"]


def test_the_accounts_storage_limits(emu):
    emu.switches(files_max_count=2)
    assert upload(emu).status_code == upload(emu).status_code == 200
    refused = error(upload(emu), 400)
    assert refused["code"] == "BadRequest.TooMany" and refused["message"] == \
        "Out of number, <2> of <2> files has been uploaded."
    assert upload(emu, key=OTHER_KEY).status_code == 200  # another account has its own storage
    emu.switches(files_max_count=10_000, files_max_total_bytes=3 * len(LINE))
    assert error(upload(emu, LINE * 2), 400)["code"] == "BadRequest.TooMany"


def test_listing_pages_filters_and_owners(emu):
    ids = [upload(emu, name=f"{n}.jsonl").json()["id"] for n in range(3)]
    upload(emu, b"doc", purpose="file-extract", name="doc.txt")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    page = emu.http.get(BASE + "/files", params={"limit": 2, "purpose": "batch"}, headers=auth).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [f["id"] for f in page["data"]] == ids[::-1][:2]  # newest first
    rest = emu.http.get(BASE + "/files", params={"limit": 2, "purpose": "batch", "after": page["data"][-1]["id"]},
                        headers=auth).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert [f.id for f in client(emu, OTHER_KEY).files.list()] == []
    assert error(emu.http.get(f"{BASE}/files/{ids[0]}", headers={"Authorization": f"Bearer {OTHER_KEY}"}), 404)


def test_keys_on_pay_as_you_go_only(emu):
    assert emu.http.post("/v1/files", headers={"Authorization": f"Bearer {API_KEY}"},
                         files={"file": ("a", LINE)}, data={"purpose": "batch"}).status_code == 404  # Coding Plan
    assert error(upload(emu, key=SEED), 401)["code"] == "invalid_api_key"
    assert error(emu.http.get(BASE + "/files"), 401)["code"] == "invalid_api_key"
    emu.switches(batch_api=False)
    assert upload(emu).status_code == 404
