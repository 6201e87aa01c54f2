"""An unchanged openai-python client: no base URL, no proxy setting of its own. Whatever it does
differently comes from the environment (HTTPS_PROXY, SSL_CERT_FILE) or from the network.

    python openai_python.py TEXT      one chat completion, then the same as a stream
Prints one JSON object: {"chat": answer, "stream": answer assembled from the deltas, "chunks": n}."""

import json
import sys

import openai

text = sys.argv[1]
client = openai.OpenAI(max_retries=0, timeout=30)  # OPENAI_API_KEY from the environment
assert str(client.base_url) == "https://api.openai.com/v1/", client.base_url
messages = [{"role": "user", "content": text}]
chat = client.chat.completions.create(model="gpt-4o", messages=messages)
parts, chunks = [], 0
for chunk in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
    chunks += 1
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
print(json.dumps({"chat": chat.choices[0].message.content, "stream": "".join(parts), "chunks": chunks}))
