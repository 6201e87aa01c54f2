"""The ingress: who may connect and which flows are the gateway's.

    routing.py   which flows are claimed, and which route each request takes
    access.py    client keys (wherever a client put one), Host and Origin (DNS rebinding), declared size
    admission.py the checks of a claimed request's head, in order
    body.py      the request body, decoded within the size limit and parsed once
    claim.py     a claimed flow's record opened, and pointed at the relay
    connection_policy.py  the last line: a claimed flow reaches no server but the gateway's own
    exposure.py  mitmproxy's options held to what the gateway needs (loopback, lazy connections)
    login.py     remote OAuth login (/auth/*), loopback-only by default
    hostile.py   hostile clients: oversized and late heads, descriptor storms
"""
