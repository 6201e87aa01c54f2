"""The door: who may connect and which flows are the gateway's.

    routing.py  which flows are claimed, and which route each request takes
    access.py   client keys, Host and Origin (DNS rebinding), declared size
    body.py     the request body, decoded within the size limit and parsed once
    fence.py    the last line: a claimed flow reaches no server but the gateway's own
    options.py  mitmproxy's options held to what the gateway needs (loopback, lazy connections)
    login.py    remote OAuth login (/auth/*), loopback-only by default
"""
