"""OpenAI's Files and Batch APIs (`/v1/files`, `/v1/batches`) served by Model Studio's own (pay-as-you-go key
accounts only): a batch's lines translated as chat requests are, its results read back as OpenAI's, each file and
batch owned by the named key that made it, and each batch billed once at the batch rate in the ledger.

`lines.py` (a file's lines both ways, and what its results cost), `pieces.py` (that work off the event loop, a piece
at a time), `multipart.py` (the upload's form), `create.py` (a batch's body, as OpenAI checks it), stores/batches.py
(who owns what, in the state folder), `bills.py` (a finished batch's bill, once whatever crashes), `watch.py` (the
gateway's own looks at its unfinished batches), `routes.py` (the local route: each request to Qwen's API and back,
through upstream/dashscope/batch_calls.py: the retry policy and the pool; which accounts may run batches is
upstream/dashscope/batch_accounts.py's)."""
