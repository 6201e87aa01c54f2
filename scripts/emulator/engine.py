"""vLLM and SGLang modes: the engine behind the API server — its batch (`--max-num-seqs`), its pace (`--token-delay`,
POST /_emulator/speed), whether it is alive (POST /_emulator/engine) and the counters /metrics shows.

- Busy (vLLM's scheduler, `vllm/v1/core/sched/scheduler.py`; SGLang's `--max-running-requests`): at most
  `max_num_seqs` requests generate at once; the others wait in arrival order, as long as it takes. Neither server
  answers 429 when busy (third-party measurements: 48 requests served at 4× max_num_seqs).
- Pace: each generated token takes `token_delay` seconds (0: as fast as the emulator writes), so a test can make one
  server slow; a whole answer is sent when its last token is made, a stream's chunk when its token is.
- Dead engine (vLLM `EngineDeadError`, `vllm/v1/engine/exceptions.py`): `GET /health` answers 503 (api_server's
  health route catches it), chat 500.
- /metrics (vLLM `vllm/v1/metrics/loggers.py`, Prometheus text, labels `engine` and `model_name`;
  SGLang `python/sglang/srt/metrics/collector.py`, label `model_name`, only with `--enable-metrics`).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

KV_BLOCKS = 4096  # the KV cache's size in blocks, for kv_cache_usage_perc (the emulator's own figure)


class Engine:
    def __init__(self, max_num_seqs: int, token_delay: float) -> None:
        self.cond = threading.Condition()
        self.defaults = (max(1, max_num_seqs), max(0.0, token_delay))
        self.running = self.waiting = 0  # requests in flight: a reset does not forget them
        self.reset()

    def reset(self) -> None:
        """The command line's pace and batch, alive, counters at zero (POST /_emulator/reset)."""
        with self.cond:
            self.max_num_seqs, self.token_delay = self.defaults
            self.dead = False
            self.hits = self.queries = self.prompt_tokens = self.generation_tokens = 0
            self.finished: dict[str, int] = {}
            self.cond.notify_all()

    @contextmanager
    def slot(self, stopping: threading.Event):
        """Holds one of the batch's places while a request generates; waits (counted as waiting) for one."""
        with self.cond:
            self.waiting += 1
            while self.running >= self.max_num_seqs and not stopping.is_set():
                self.cond.wait(0.1)
            self.waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify_all()

    def pace(self, tokens: int, stopping: threading.Event) -> None:
        """The time `tokens` generated tokens take."""
        if self.token_delay and tokens > 0:
            stopping.wait(self.token_delay * tokens)

    def served(self, prompt: int, cached: int, completion: int, finish: str) -> None:
        with self.cond:
            self.queries += prompt
            self.hits += cached
            self.prompt_tokens += prompt
            self.generation_tokens += completion
            self.finished[finish] = self.finished.get(finish, 0) + 1

    def admin(self, body: dict) -> dict | str:
        """POST /_emulator/engine {"dead": bool} and /_emulator/speed {"token_delay": s, "max_num_seqs": n}."""
        with self.cond:
            if "dead" in body:
                if not isinstance(body["dead"], bool):
                    return "dead must be true or false"
                self.dead = body["dead"]
            if "token_delay" in body:
                delay = body["token_delay"]
                if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
                    return "token_delay must be a number of seconds ≥ 0"
                self.token_delay = float(delay)
            if "max_num_seqs" in body:
                n = body["max_num_seqs"]
                if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                    return "max_num_seqs must be a positive integer"
                self.max_num_seqs = n
                self.cond.notify_all()
            return {"dead": self.dead, "token_delay": self.token_delay, "max_num_seqs": self.max_num_seqs,
                    "running": self.running, "waiting": self.waiting}

    def metrics(self, flavour: str, model: str, kv_blocks: int) -> str:
        """The Prometheus exposition of the gauges and counters a load balancer reads."""
        usage = min(1.0, kv_blocks / KV_BLOCKS)
        if flavour == "sglang":
            label = f'{{model_name="{model}"}}'
            rows = [("sglang:num_running_reqs", "gauge", "The number of running requests.", self.running),
                    ("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", self.waiting),
                    ("sglang:token_usage", "gauge", "The token usage.", usage),
                    ("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.",
                     self.hits / self.queries if self.queries else 0.0),
                    ("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
                     self.prompt_tokens),
                    ("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.",
                     self.generation_tokens)]
        else:
            label = f'{{engine="0",model_name="{model}"}}'
            rows = [("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
                     self.running),
                    ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
                     self.waiting),
                    ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", usage),
                    ("vllm:prefix_cache_queries_total", "counter",
                     "Prefix cache queries, in terms of number of queried tokens.", self.queries),
                    ("vllm:prefix_cache_hits_total", "counter",
                     "Prefix cache hits, in terms of number of cached tokens.", self.hits),
                    ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
                     self.prompt_tokens),
                    ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
                     self.generation_tokens)]
        out = []
        for name, kind, help_, value in rows:
            base = name.removesuffix("_total") if kind == "counter" else name
            out += [f"# HELP {base} {help_}", f"# TYPE {base} {kind}", f"{name}{label} {float(value)}"]
            if kind == "counter":
                out.append(f"{base}_created{label} {START:.9e}")
        if flavour != "sglang":
            out += ["# HELP vllm:request_success Count of successfully processed requests.",
                    "# TYPE vllm:request_success counter"]
            out += [f'vllm:request_success_total{{engine="0",finished_reason="{r}",model_name="{model}"}} {float(n)}'
                    for r, n in sorted(self.finished.items())]
        return "\n".join(out) + "\n"


START = time.time()
