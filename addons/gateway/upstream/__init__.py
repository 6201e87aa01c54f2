"""Upstreams: everything that talks to Qwen. The engine (engine.py) sends an exchange with the account's
credential over its own warm pooled connections (client.py), retrying a refused token, an exhausted account
or throttling before the client sees a byte (retry.py); streams reach mitmproxy through the loopback relay
(relay.py). Each upstream kind translates the chat form to its own wire and back (dashscope/).
An upstream never knows which client dialect asked.
"""
