"""Named client keys (qwen-keys): the check, limits and spend of each (team.py), its ring (ring.py), where the keys
live (source.py, store.py, team_pg.py; place.py and move.py when that changes), rate limits and their headers
(limits.py, rate_headers.py), spend (spend.py), refusals (refusals.py)."""
