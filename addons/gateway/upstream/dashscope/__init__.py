"""DashScope's OpenAI-compatible mode: what Qwen Code OAuth logins and every keyed plan (Model Studio,
Coding Plan, Token Plan) speak. The chat form is nearly its own, so this upstream applies
DashScope's rules and qwen-code's request shape on the way out (request.py, rules.py, headers.py) and
repairs Qwen's quirks on the way back (answer.py, stream.py, errors.py)."""
