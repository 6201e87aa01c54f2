"""The account pool the upstream calls are served by (`accounts.Pool`): which account answers a request (pool.py),
a conversation kept on its account (affinity.py, shared on PostgreSQL by affinity_pg.py), keys of one cloud account
cooled together (groups.py), the quota windows that keep an account away (windows.py) and what the pool says of its
accounts (status.py). Built from the credentials (../auth/) by the wiring; the engine sees only the protocol."""
