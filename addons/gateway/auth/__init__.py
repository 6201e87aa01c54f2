"""Credentials and their accounts: Qwen Code OAuth logins, API keys and Qwen Chat web sessions behind one `Account`,
with their state. Part of the core: the account pool that serves upstream calls (upstream/pool/) is built from them
and the commands (cli/auth.py) manage them; nothing here imports an outer package."""
