"""The stores of what clients keep with the gateway, with their SQL: one room of the core beside storage/ (which
they reach their databases through), used by the dialects (api/), the commands and the wiring; it imports no outer
package.

- `responses.py`: stored Responses in the state folder's SQLite file (`previous_response_id`, GET
  /v1/responses/{id}, its input items, `item_reference`s), and the key that seals `encrypted_content`;
  `responses_pg.py` the same on the shared PostgreSQL; `responses_rows.py` one stored response as rows (and the ids
  of its input items); `responses_schema.py` the tables, per-owner limits and age, and forgetting an owner.
- `stored_chat.py`: stored chat completions (`store: true`), a table of the Responses store's file;
  `stored_chat_pg.py` the same on PostgreSQL.
- `batches.py`: who owns each file and batch of the Files and Batch APIs, and each batch's bill, once.
"""
