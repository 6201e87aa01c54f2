"""The command-line programs besides `qwen-auth` (cli/auth.py): `qwen-gateway` (service.py: mitmdump with
the addon, and a systemd user service), `qwen-usage` (usage.py: the usage ledger) and `qwen-redirect`
(redirect.py: transparent-mode firewall rules). Programs are entry points: they may use any outer package.
"""
