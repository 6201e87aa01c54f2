"""The command-line programs: `qwen-gateway` (service.py: mitmdump with the addon, and a systemd user service),
`qwen-auth` (auth.py: logins, keys and web sessions; auth_keys.py, auth_status.py, auth_web.py), `qwen-usage`
(usage.py: the usage ledger), `qwen-keys` (keys.py: named client keys) and `qwen-redirect` (redirect.py:
transparent-mode firewall rules). Programs are entry points: they may use any outer package.
"""
