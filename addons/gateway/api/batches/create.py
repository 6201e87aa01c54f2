"""`POST /v1/batches`: its body checked as OpenAI's Batch API checks it, before anything goes to Qwen.

The body is OpenAI's `CreateBatchRequest` (openai/openai-openapi f85dbe2, spec 2.3.0, MIT): its fields only — another
is `400 unknown_parameter` — and `metadata` a map of strings (`Metadata`). `endpoint` and `completion_window` are
any strings here: Model Studio takes more than OpenAI's enums (its test endpoint `/v1/chat/ds-test`, windows of 24h
to 336h) and answers what it does not take in its own words."""

from __future__ import annotations

from ...errors import GatewayError
from ..request_schema import Compiler, check

_SCHEMAS = {
    "Metadata": {"anyOf": [{"type": "object", "additionalProperties": {"type": "string", "maxLength": 512}},
                           {"type": "null"}]},
    "BatchFileExpirationAfter": {"type": "object", "required": ["anchor", "seconds"], "properties": {
        "anchor": {"type": "string", "enum": ["created_at"]},
        "seconds": {"type": "integer", "minimum": 3600, "maximum": 2592000}}},
    "CreateBatchRequest": {
        "type": "object", "required": ["input_file_id", "endpoint", "completion_window"],
        "additionalProperties": False,
        "properties": {"input_file_id": {"type": "string"}, "endpoint": {"type": "string"},
                       "completion_window": {"type": "string"}, "metadata": {"$ref": "#/components/schemas/Metadata"},
                       "output_expires_after": {"$ref": "#/components/schemas/BatchFileExpirationAfter"}}},
}
CREATE_BATCH = Compiler({"components": {"schemas": _SCHEMAS}}).named("CreateBatchRequest")


def checked(body: object) -> dict:
    """The body, when OpenAI's Batch API would take it; else its 400, naming the field."""
    if not isinstance(body, dict):
        raise GatewayError(400, "The body of POST /v1/batches must be a JSON object.", code="invalid_request_body")
    return check(CREATE_BATCH, body)

