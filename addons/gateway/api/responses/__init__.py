"""The Responses API (/v1/responses, its WebSocket, compaction and stored responses) on the pivot.

    endpoints.py  the two endpoints, wired from the modules below and the store
    request.py    request -> chat request (with tools.py, items_in.py, messages.py, compaction.py)
    output.py     chat answer -> Response object (items.py: the output items; history.py: what is kept)
    stream.py     normalised chunks -> Responses events (events.py, stream_call.py, input_decoder.py)
    shapes.py     the TypedDicts of what is built
    store.py      stored responses (SQLite); retrieve.py: their local routes
    socket.py     the WebSocket transport; socket_turns.py: one response.create
"""
