"""vLLM and SGLang modes: tool calls as the Qwen3.6/3.8 models write them (XML in the text) and as the servers' tool
parsers read them back.

- Qwen3-Coder, Qwen3.5, 3.6 and 3.8 write a call as `<tool_call>\\n<function=NAME>\\n<parameter=P>\\nVALUE\\n</parameter>
  \\n</function>\\n</tool_call>` (their chat templates' tool instructions); `--tool-call-parser qwen3_coder` and
  `qwen3_xml` read it (vLLM `docs/serving/integrations/codex.md`, SGLang `qwen3_5.md`): each value converted by the
  tool's JSON schema (string kept, integer/number/boolean/object/array parsed). `hermes` reads only JSON between
  the tags: the XML stays in the content, finish_reason "stop" — as rough as the real server.
- Without `preserve_thinking` the template drops the reasoning of earlier assistant turns; in a tool loop Qwen3.6
  then calls tools with empty `{}` arguments after two or three turns (earendil-works/pi #3325, hermes-agent
  #56004): the emulator's model does so once the conversation holds two assistant turns with tool calls.
"""

from __future__ import annotations

import json
import re

XML_PARSERS = tuple("qwen3_coder qwen3_xml".split())  # vLLM's parser names (flag values, not model ids)
PARSERS = ("hermes", *XML_PARSERS)
DEGRADE_AFTER = 2  # assistant tool-call turns after which, without preserve_thinking, arguments come out `{}`
_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>(.*?)</function>\s*</tool_call>", re.S)
_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)


def _value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def xml(calls: list[dict]) -> str:
    """The model's text for these calls (`name`, `arguments` a dict), one block each."""
    return "\n".join("<tool_call>\n<function=" + c["name"] + ">\n" + "".join(
        f"<parameter={k}>\n{_value(v)}\n</parameter>\n" for k, v in c["arguments"].items())
        + "</function>\n</tool_call>" for c in calls)


def _schema(tools, name: str) -> dict:
    for t in tools or ():
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and fn.get("name") == name:
            return (fn.get("parameters") or {}).get("properties") or {}
    return {}


def _convert(text: str, kind) -> object:
    if kind in ("integer", "number", "boolean", "object", "array", "null"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def parse_xml(content: str, tools) -> tuple[str | None, list[dict]] | None:
    """qwen3_coder / qwen3_xml on a whole answer: the text before the first call and the calls (name, arguments as
    a JSON string), or None when there is no complete call (the text stays as it is)."""
    found = list(_CALL.finditer(content))
    if not found:
        return None
    calls = []
    for m in found:
        name = m.group(1).strip()
        props = _schema(tools, name)
        args = {k.strip(): _convert(v, (props.get(k.strip()) or {}).get("type")) for k, v in _PARAM.findall(m.group(2))}
        calls.append({"name": name, "arguments": json.dumps(args, ensure_ascii=False)})
    return content[:content.find("<tool_call>")] or None, calls


def degraded(body: dict, template: str | None) -> bool:
    """Qwen3.6's tool loop without `preserve_thinking`: two assistant tool turns or more already in the
    conversation."""
    if not template:
        return False
    kwargs = body.get("chat_template_kwargs") if isinstance(body.get("chat_template_kwargs"), dict) else {}
    if kwargs.get("preserve_thinking") is True:
        return False
    turns = sum(1 for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "assistant"
                and m.get("tool_calls"))
    return turns >= DEGRADE_AFTER
