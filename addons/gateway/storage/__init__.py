"""Where the gateway keeps its state, for every store (the accounts' state, the usage ledger, stored Responses
and chats, client keys, web pins): one room of the core, which any outer package uses and which imports no outer package.

- `health.py`: whether a storage can be used now — the one `StateUnavailable` error (answered 503
  `state_unavailable`), one log line per outage, the probe that sees it back; the local folder's faults.
- `sqlite.py`: the local state folder's SQLite files (private, WAL) and one commit for many statements.
- `pg.py`: the shared PostgreSQL database (`qwen_state_url`): connections, schema migrations, NOTIFY; behind it
  `pg_url.py` (the URL's rules), `pg_faults.py` (which failures are the storage's, the deadline on a database
  that stops answering), `pg_schema.py` (numbered steps per component), `pg_follow.py` (a local copy kept in step).
"""
