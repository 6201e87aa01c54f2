"""The Responses API (/v1/responses, its WebSocket, compaction and stored responses) on the chat form.

    endpoints.py  the two endpoints, wired from the modules below and the store
    request.py    request -> chat request (with tools.py, items_in.py, chat_messages.py, compaction.py; fields.py:
                  fields honoured the gateway's way or refused by name)
    output.py     chat answer -> Response object (items.py: the output items; history.py: what is kept)
    stream.py     normalised chunks -> Responses events (events.py, stream_call.py, input_decoder.py)
    shapes.py     the TypedDicts of what is built
    retrieve.py   the local routes of stored responses (their store: stores/responses.py)
    background.py `background: true` responses: the check, the run's record (its runner: turn/background.py)
    socket_messages.py  the WebSocket's messages: a response.create as a turn, the connection's history (the
                  transport: turn/socket.py)
"""
