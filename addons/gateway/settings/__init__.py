"""The gateway's options: declared (settings/option_table.py), checked (settings/option_specs.py) and parsed once into a `Config`
(settings/config.py); where credentials and state live (auth.py); the network the gateway's own calls take (settings/network.py); the
mitmproxy defaults it changes (mitmproxy_defaults.py)."""
