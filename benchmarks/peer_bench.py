"""The CompactLM engine against llama.cpp's llama-server on the same model, same cores; the last line is JSON.

    benchmarks/build_llama_cpp.sh                       # once: builds llama-server/llama-quantize (~10 min)
    .venv/bin/compactlm models pull smollm2-135m        # once: SmolLM2-135M-Instruct, converted to an HF folder
    .venv/bin/python benchmarks/peer_bench.py [--precisions fp32,int8,int4] [--cores 0,1] [--threads 1]

Both servers are real HTTP servers on loopback, pinned to the same ``--cores`` with the same thread budget
(``--threads`` compute threads each: llama-server ``-t``/``-tb``, the engine ``serve.threads``), serving the
same weights: the HF folder of SmolLM2-135M for the engine (quantized at load: fp32, int8, int4) and GGUFs
written from that very folder for llama.cpp (``convert_hf_to_gguf.py --outtype f32|q8_0``, Q4_0 by
``llama-quantize``). Matched precisions: engine fp32 / F32, int8 / Q8_0, int4 / Q4_0. The engine runs without
speculative decoding (``serve.speculative_tokens=0``); one extra run, ``engine+spec``, at ``--speculative-at``
(int8) drafts ``--speculative`` (8) tokens per step from the server's own earlier answers (no prompt is
sent twice unless ``repeated_prompts`` says so). llama-server gets ``--parallel`` = the engine's batch
(``--batch``, 32) and a context of 512 tokens per slot.

Prompts are held-out support messages (the generator's test split, a seed no model here trained on) sent
as raw ``/v1/completions`` prompts in the same order to both servers; sampling is greedy with exactly
``--new-tokens`` (100) new tokens (``min_tokens`` for the engine, ``ignore_eos`` for llama-server). Measured:

* decode tokens/s per stream at batch 1: streamed requests, (tokens - 1) / (last token - first token), median of
  ``--decode-requests`` requests sent to the two servers in turns while both are up and idle (``decode in turns``:
  this VM's speed drifts by +-15 % within minutes); each server's own figure from its solo run is kept as
  ``decode_tps_alone``;
* prefill tokens/s of a 256-token prompt and time to first token at batch 1 (``max_tokens`` 1);
* requests/s and p50/p95 latency with ``--clients`` (1, 8, 32) closed-loop clients for ``--seconds`` each;
* time to first token p50 at 8 concurrent streaming clients;
* peak RSS of each server process (``VmRSS`` polled every 50 ms over its whole run; MB = 10**6 bytes);
* greedy agreement at fp32: how many of ``--agreement`` prompts give the same 32-token text on both.

Ratios are engine / llama.cpp of the same run (>1 is the engine faster, except ``ttft8_ratio`` and
``rss_ratio`` where lower is better); ``rps32_ratio``/``ttft8_ratio``/``rss_ratio`` are at ``ratios_at`` (int8)
and again per precision (``rps32_ratio_fp32``...). Targets (issue 12): decode ratio >= 1.0 at every precision,
``rps32_ratio`` >= 1.5, ``ttft8_ratio`` <= 1.0, ``rss_ratio`` <= 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from serve_bench import free_port, start, wait_until  # noqa: E402  (same process plumbing as serve_bench)

LLAMA_DIR = REPO / ".compactlm" / "llama.cpp" / "0.3.36"
GGUF_TYPES = {"fp32": "F32", "int8": "Q8_0", "int4": "Q4_0"}
SERVED = {"engine": "peer"}  # the engine's model id, read from GET /v1/models when it is up


def log(message: str) -> None:
    print(f"[peer-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ggufs(model_dir: Path, llama_bin: Path, workdir: Path, precisions: list[str]) -> dict[str, Path]:
    """The GGUF of each precision, written from ``model_dir`` once (cached in ``workdir``)."""
    src = llama_bin.parents[1] / "src" / "vendor" / "llama.cpp"  # <build dir>/bin -> the build's own source tree
    if not (src / "convert_hf_to_gguf.py").is_file():
        src = LLAMA_DIR / "src" / "vendor" / "llama.cpp"
    out: dict[str, Path] = {}
    f32 = workdir / "model-F32.gguf"
    for precision in precisions:
        kind = GGUF_TYPES[precision]
        path = workdir / f"model-{kind}.gguf"
        out[precision] = path
        if path.is_file():
            continue
        tmp = path.with_suffix(".tmp")
        if kind in ("F32", "Q8_0"):
            env = {**os.environ, "PYTHONPATH": str(src / "gguf-py"), "NO_LOCAL_GGUF": ""}
            done = subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(model_dir), "--outtype",
                                   kind.lower(), "--outfile", str(tmp)], env=env, capture_output=True, text=True)
            if done.returncode != 0:  # e.g. sentencepiece missing (build_llama_cpp.sh installs it)
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                sys.exit(f"error: convert_hf_to_gguf.py could not write the {kind} GGUF: {last}"
                         + (" (pip install sentencepiece)" if "sentencepiece" in last else ""))
        else:
            if not f32.is_file():
                ggufs(model_dir, llama_bin, workdir, ["fp32"])
            subprocess.run([str(llama_bin / "llama-quantize"), str(f32), str(tmp), kind], check=True,
                           capture_output=True)
        tmp.rename(path)  # complete or absent
        log(f"wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB)")
    return out


def held_out_prompts(n: int) -> list[str]:
    from compactlm.data.sources.generator import generate_support_dataset

    frame = generate_support_dataset(n_rows=max(4 * n, 400), seed=4242)
    return [f"Customer: {text}\nAgent:" for text in frame["instruction"].drop_duplicates().head(n)]


class RssWatch:
    """Polls a process's ``VmRSS`` every 50 ms in a thread; ``peak_mb`` is the largest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=2)
        return round(self.peak_kib * 1024 / 1e6, 1)


def body(kind: str, prompt: str, tokens: int, stream: bool = False) -> dict:
    payload = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": stream}
    if kind.startswith("engine"):
        payload.update(model=SERVED["engine"], min_tokens=tokens)
    else:
        payload.update(ignore_eos=True, n_predict=tokens, cache_prompt=False)
    return payload


async def streamed(client, kind: str, prompt: str, tokens: int) -> dict:
    """One streamed completion: time to first token, decode rate and total time (s)."""
    start = time.perf_counter()
    stamps: list[float] = []
    async with client.stream("POST", "/v1/completions", json=body(kind, prompt, tokens, stream=True)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            choices = chunk.get("choices") or []
            if choices and choices[0].get("text"):
                stamps.append(time.perf_counter())
    if not stamps:
        raise RuntimeError(f"{kind}: a streamed completion produced no text")
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    return {"ttft_s": stamps[0] - start, "total_s": stamps[-1] - start, "chunks": len(stamps), "decode_tps": decode}


async def complete(client, kind: str, prompt: str, tokens: int) -> tuple[float, str, int]:
    start = time.perf_counter()
    response = await client.post("/v1/completions", json=body(kind, prompt, tokens))
    response.raise_for_status()
    data = response.json()
    return time.perf_counter() - start, data["choices"][0]["text"], data["usage"]["completion_tokens"]


async def measure(kind: str, url: str, prompts: list[str], long_prompt: str, args) -> dict:
    import httpx

    sent = [0]

    def prompt_feed():
        while True:
            for prompt in prompts:
                sent[0] += 1
                yield prompt

    feed = prompt_feed()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=1800, limits=limits) as client:
        for _ in range(2):  # warm-up
            await complete(client, kind, next(feed), 8)
        singles = [await streamed(client, kind, next(feed), args.new_tokens) for _ in range(args.decode_requests)]
        decode = statistics.median([s["decode_tps"] for s in singles if s["decode_tps"]])
        prefill = []
        for _ in range(3):
            t0 = time.perf_counter()
            _, _, _ = await complete(client, kind, long_prompt, 1)
            prefill.append(time.perf_counter() - t0)
        out = {"decode_tps_batch1": round(decode, 2), "ttft_batch1_ms": round(1000 * statistics.median(
            [s["ttft_s"] for s in singles]), 1), "prefill_256_ms": round(1000 * statistics.median(prefill), 1),
            "prefill_256_tps": round(args.long_prompt_tokens / statistics.median(prefill), 1)}
        ttft8 = await asyncio.gather(*(streamed(client, kind, next(feed), args.new_tokens) for _ in range(8)))
        out["ttft8_p50_ms"] = round(1000 * statistics.median([s["ttft_s"] for s in ttft8]), 1)
        for clients in args.clients:
            done, errors = [], []
            deadline = time.perf_counter() + args.seconds
            t0 = time.perf_counter()

            async def worker(deadline=deadline, done=done, errors=errors) -> None:
                while time.perf_counter() < deadline:
                    try:
                        elapsed, _, produced = await complete(client, kind, next(feed), args.new_tokens)
                        if produced != args.new_tokens:
                            raise RuntimeError(f"{produced} tokens, expected {args.new_tokens}")
                        done.append(elapsed)
                    except Exception as exc:  # counted and reported, never hidden
                        errors.append(repr(exc)[:200])

            await asyncio.gather(*(worker() for _ in range(clients)))
            wall = time.perf_counter() - t0
            q = sorted(done)
            out[f"clients_{clients}"] = {
                "requests": len(done), "errors": len(errors), "seconds": round(wall, 1),
                "rps": round(len(done) / wall, 3), "tokens_per_s": round(len(done) * args.new_tokens / wall, 1),
                "p50_ms": round(1000 * q[len(q) // 2], 1) if q else None,
                "p95_ms": round(1000 * q[min(len(q) - 1, int(0.95 * len(q)))], 1) if q else None,
                "first_error": errors[0] if errors else None}
    out["prompts_sent"], out["repeated_prompts"] = sent[0], max(0, sent[0] - len(prompts))
    return out


async def texts(kind: str, url: str, prompts: list[str], tokens: int = 32) -> list[str]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        return [(await complete(client, kind, p, tokens))[1] for p in prompts]


@contextlib.contextmanager
def server(kind: str, precision: str, args, model_dir: Path, gguf: Path, llama_bin: Path, workdir: Path):
    """A running server of ``kind`` at ``precision``: yields ``(url, rss_watch)``; stopped on exit."""
    port = free_port()
    log_path = workdir / f"{kind}-{precision}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    if kind.startswith("engine"):
        speculative = args.speculative if kind == "engine+spec" else 0
        command = [str(REPO / ".venv" / "bin" / "compactlm"), "serve", "--model-dir", str(model_dir), "--port",
                   str(port), "--host", "127.0.0.1", "--set", f"serve.quantization={precision}", "--set",
                   f"serve.threads={args.threads}", "--set", f"serve.max_batch_size={args.batch}", "--set",
                   f"serve.speculative_tokens={speculative}", "--set", "serve.traffic_db=none", "--set",
                   f"serve.max_seq_len={args.context}", "--set", f"serve.kv_cache_dtype={args.kv_cache_dtype}"]
        ready = f"http://127.0.0.1:{port}/ready"
    else:
        command = [str(llama_bin / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                   "-t", str(args.threads), "-tb", str(args.threads), "--parallel", str(args.batch), "-c",
                   str(args.context * args.batch), "--no-webui", "-a", "peer"]
        ready = f"http://127.0.0.1:{port}/health"
    process = start(command, args.cores, env, log_path)
    watch = RssWatch(process.pid)
    try:
        wait_until(ready, process, log_path, timeout=600)
        if kind.startswith("engine"):
            import httpx

            SERVED["engine"] = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"]
        yield f"http://127.0.0.1:{port}", watch
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        watch.stop()


def run_server(kind: str, precision: str, args, model_dir: Path, gguf: Path, llama_bin: Path, workdir: Path,
               job) -> tuple[dict, float]:
    """Run ``job(url)`` against one server alone; returns its figures and the server's peak RSS (MB)."""
    with server(kind, precision, args, model_dir, gguf, llama_bin, workdir) as (url, watch):
        figures = job(url)
    return figures, watch.stop()


def decode_duel(precision: str, args, model_dir: Path, gguf: Path, llama_bin: Path, workdir: Path,
                prompts: list[str]) -> dict[str, list[float]]:
    """Batch-1 decode tokens/s of both servers, measured in turns (A B, B A, ...) while both are up and idle.

    This VM's speed drifts by +-15 % within minutes; one request to each in alternation, each with the same
    prompt, makes the decode ratio compare the two under the same conditions instead of minutes apart.
    """
    import httpx

    async def rounds(urls: dict[str, str]) -> dict[str, list[float]]:
        rates: dict[str, list[float]] = {kind: [] for kind in urls}
        clients = {kind: httpx.AsyncClient(base_url=url, timeout=1800) for kind, url in urls.items()}
        try:
            for kind, client in clients.items():  # warm-up
                await complete(client, kind, prompts[0], 8)
            for i in range(args.decode_requests):
                order = list(clients) if i % 2 == 0 else list(reversed(clients))
                for kind in order:
                    rates[kind].append((await streamed(clients[kind], kind, prompts[1 + i], args.new_tokens))
                                       ["decode_tps"])
        finally:
            for client in clients.values():
                await client.aclose()
        return rates

    with server("llama.cpp", precision, args, model_dir, gguf, llama_bin, workdir) as (peer, _), \
            server("engine", precision, args, model_dir, gguf, llama_bin, workdir) as (engine, _):
        return asyncio.run(rounds({"llama.cpp": peer, "engine": engine}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="HF folder (default: the pulled SmolLM2-135M-Instruct)")
    parser.add_argument("--llama-bin", default=str(LLAMA_DIR / "build" / "bin"))
    parser.add_argument("--precisions", default="fp32,int8,int4")
    parser.add_argument("--cores", default="0,1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=512, help="tokens per sequence (llama: per slot)")
    parser.add_argument("--kv-cache-dtype", default="bfloat16", choices=("bfloat16", "float32"),
                        help="the engine's KV cache (llama-server's default cache is F16: 2 bytes, as bfloat16)")
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--decode-requests", type=int, default=3)
    parser.add_argument("--long-prompt-tokens", type=int, default=256)
    parser.add_argument("--agreement", type=int, default=10, help="prompts compared for greedy text at fp32")
    parser.add_argument("--speculative", type=int, default=8,
                        help="drafted tokens of the extra 'engine+spec' run (0: no such run)")
    parser.add_argument("--speculative-at", default="int8", help="the precision of the 'engine+spec' run")
    parser.add_argument("--workdir", default=str(REPO / ".compactlm" / "peer-bench"))
    args = parser.parse_args()
    args.cores = [int(c) for c in args.cores.split(",")]
    args.clients = [int(c) for c in args.clients.split(",")]
    precisions = [p.strip() for p in args.precisions.split(",")]
    llama_bin = Path(args.llama_bin)
    if not (llama_bin / "llama-server").is_file():
        sys.exit(f"error: no llama-server in {llama_bin}: run benchmarks/build_llama_cpp.sh first")
    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        from compactlm.models.bundled import bundled_path

        model_dir = Path(bundled_path("bundled:smollm2-135m"))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"model {model_dir}; writing GGUFs into {workdir}")
    files = ggufs(model_dir, llama_bin, workdir, precisions)
    prompts = held_out_prompts(200)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    words = " ".join(prompts).split()
    long_prompt = ""
    for i in range(len(words)):
        candidate = " ".join(words[: i + 1])
        if len(tokenizer(candidate)["input_ids"]) > args.long_prompt_tokens:
            break
        long_prompt = candidate
    results: dict = {}
    agreement: dict = {}
    for precision in precisions:
        kinds = ["llama.cpp", "engine"]
        if args.speculative and precision == args.speculative_at:
            kinds.append("engine+spec")
        for kind in kinds:
            log(f"{kind} at {precision} ({GGUF_TYPES[precision] if kind == 'llama.cpp' else precision})")
            sample = prompts[: args.agreement]

            def job(url: str, kind=kind, precision=precision, sample=sample) -> dict:
                figures = asyncio.run(measure(kind, url, prompts[args.agreement:], long_prompt, args))
                if precision == "fp32" and args.agreement:
                    figures["agreement_texts"] = asyncio.run(texts(kind, url, sample))
                return figures

            figures, rss = run_server(kind, precision, args, model_dir, files[precision], llama_bin, workdir, job)
            figures["peak_rss_mb"] = rss
            results[f"{kind}/{precision}"] = figures
            log(f"  {json.dumps({k: v for k, v in figures.items() if k != 'agreement_texts'})}")
        if args.decode_requests:
            log(f"decode duel at {precision}: {args.decode_requests} streamed requests to each server in turns")
            duel = decode_duel(precision, args, model_dir, files[precision], llama_bin, workdir,
                               prompts[args.agreement:])
            for kind, rates in duel.items():
                results[f"{kind}/{precision}"]["decode_tps_alone"] = results[f"{kind}/{precision}"][
                    "decode_tps_batch1"]
                results[f"{kind}/{precision}"]["decode_tps_samples"] = [round(r, 2) for r in rates]
                results[f"{kind}/{precision}"]["decode_tps_batch1"] = round(statistics.median(rates), 2)
            log(f"  decode in turns (tok/s): {json.dumps({k: [round(r, 2) for r in v] for k, v in duel.items()})}")
        if precision == "fp32" and args.agreement:
            a = results["engine/fp32"].pop("agreement_texts")
            b = results["llama.cpp/fp32"].pop("agreement_texts")
            agreement = {"prompts": len(a), "same_text": sum(x.strip() == y.strip() for x, y in zip(a, b)),
                         "example_engine": a[0][:120], "example_llama": b[0][:120]}

    def ratio(precision: str, key: str, sub: str | None = None, kind: str = "engine") -> float | None:
        engine, peer = results.get(f"{kind}/{precision}"), results.get(f"llama.cpp/{precision}")
        if not engine or not peer:
            return None
        e, p = (engine[sub][key], peer[sub][key]) if sub else (engine[key], peer[key])
        return round(e / p, 3) if e and p else None

    ref = "int8" if "int8" in precisions else precisions[0]
    summary = {f"decode_tps_ratio_{p}": ratio(p, "decode_tps_batch1") for p in precisions}
    summary.update({"rps32_ratio": ratio(ref, "rps", "clients_32") if 32 in args.clients else None,
                    "ttft8_ratio": ratio(ref, "ttft8_p50_ms"), "rss_ratio": ratio(ref, "peak_rss_mb"),
                    "ratios_at": ref})
    for p in precisions:  # the same three at every precision
        summary[f"rps32_ratio_{p}"] = ratio(p, "rps", "clients_32") if 32 in args.clients else None
        summary[f"ttft8_ratio_{p}"] = ratio(p, "ttft8_p50_ms")
        summary[f"rss_ratio_{p}"] = ratio(p, "peak_rss_mb")
    if args.speculative and f"engine+spec/{args.speculative_at}" in results:  # with drafts (not a target)
        at = args.speculative_at
        summary[f"decode_tps_ratio_{at}_speculative"] = ratio(at, "decode_tps_batch1", kind="engine+spec")
        summary["rps32_ratio_speculative"] = (ratio(at, "rps", "clients_32", kind="engine+spec")
                                              if 32 in args.clients else None)
    summary.update({"greedy_agreement_fp32": agreement, "results": results,
                    "setup": {"cores": args.cores, "threads": args.threads, "batch": args.batch,
                              "new_tokens": args.new_tokens, "seconds": args.seconds, "speculative": args.speculative,
                              "speculative_at": args.speculative_at, "kv_cache_dtype": args.kv_cache_dtype,
                              "model_dir": str(model_dir), "machine": platform.machine(), "cpus": os.cpu_count(),
                              "load_average": os.getloadavg()}})
    targets = {"decode_tps_ratio": all((summary.get(f"decode_tps_ratio_{p}") or 0) >= 1.0 for p in precisions),
               "rps32_ratio": None if summary["rps32_ratio"] is None else summary["rps32_ratio"] >= 1.5,
               "ttft8_ratio": summary["ttft8_ratio"] is not None and summary["ttft8_ratio"] <= 1.0,
               "rss_ratio": summary["rss_ratio"] is not None and summary["rss_ratio"] <= 1.5}
    summary["targets_met"] = targets
    print("\n| figure | " + " | ".join(results) + " |", file=sys.stderr)
    print("|---|" + "---|" * len(results), file=sys.stderr)
    for key in ("decode_tps_batch1", "prefill_256_tps", "ttft_batch1_ms", "ttft8_p50_ms", "peak_rss_mb"):
        print(f"| {key} | " + " | ".join(str(r.get(key)) for r in results.values()) + " |", file=sys.stderr)
    for clients in args.clients:
        print(f"| rps @{clients} | " + " | ".join(str(r[f'clients_{clients}']['rps']) for r in results.values())
              + " |", file=sys.stderr)
    print(f"results in {args.workdir} (server logs); figures below", file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    if shutil.which("taskset") is None and not hasattr(os, "sched_setaffinity"):
        sys.exit("error: no CPU pinning available")
    main()
