"""The engine's compiled batch-1 decode glue (``glue.c``): built on first use, called through ctypes.

Why: at batch 1, a SmolLM2-135M decode step is 120 GEMMs that stream the weights and ~1,300 small torch ops
between them (norms, RoPE, KV-cache writes, attention, SiLU). Each of those costs microseconds of Python and
dispatch for nanoseconds of arithmetic: ~13 ms of a ~30 ms int8 step, measured. ``glue.c`` does that work in
three calls per layer (``rms_norm``, ``attention_step``, ``silu_mul``); the GEMMs stay torch's (MKL,
fbgemm, ATen int4). Used by ``FastDecoder.decode`` for one sequence at a time; batches keep the torch path.

Needs x86-64 with AVX2 and FMA and a C compiler (``$CC``, ``cc`` or ``gcc``) on first use: the shared object
is cached under ``$XDG_CACHE_HOME/compactlm/native/`` (default ``~/.cache``), named by a hash of the source,
flags and compiler, written to a temporary name and renamed. Anywhere else, or with
``COMPACTLM_NATIVE_GLUE=0``, ``library()`` is None and the decoder keeps the torch ops; ``status()`` says why.
``-ffast-math`` lets gcc vectorize the dot products and ``expf`` (glibc's libmvec); the results differ from
torch's by float rounding (~1e-6 relative).
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from compactlm.fileio import files_digest

SOURCE = Path(__file__).with_name("glue.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-ffast-math", "-shared", "-fPIC")
CPU_FLAGS = ("avx2", "fma")
ENV = "COMPACTLM_NATIVE_GLUE"

_state: dict[str, object] = {}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compactlm" / "native"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile(compiler: str, target: Path) -> str | None:
    """Build ``target``; None on success, else why not (one line)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            return f"{compiler} failed: {(done.stderr.strip().splitlines() or ['no message'])[-1]}"
        os.replace(tmp, target)  # complete or absent
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not run {compiler}: {exc}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None, f"{ENV}=0"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, f"not x86-64 Linux ({platform.system()} {platform.machine()})"
    missing = [flag for flag in CPU_FLAGS if flag not in _cpu_flags()]
    if missing:
        return None, f"this CPU lacks {', '.join(missing)}"
    if not SOURCE.is_file():
        return None, f"{SOURCE} is missing from this install"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None, "no C compiler (cc/gcc) to build it"
    target = _cache_dir() / f"glue-{files_digest([SOURCE], seed=' '.join((*FLAGS, compiler)))}.so"
    if not target.is_file():
        error = _compile(compiler, target)
        if error:
            return None, error
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        return None, f"could not load {target}: {exc}"
    ptr, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.compactlm_rms_norm.argtypes = [ptr, i64, f32, ptr]
    lib.compactlm_silu_mul.argtypes = [ptr, i64, ptr]
    lib.compactlm_attention_step.argtypes = [ptr, i64, i64, i64, ptr, ptr, ptr, ptr, i64, i64, ctypes.c_int, f32,
                                             ptr, ptr, ptr]
    for function in (lib.compactlm_rms_norm, lib.compactlm_silu_mul, lib.compactlm_attention_step):
        function.restype = None
    return lib, f"on ({target})"


def library() -> ctypes.CDLL | None:
    """The compiled glue, built once per process; None where it cannot be used (see ``status()``)."""
    if "lib" not in _state:
        _state["lib"], _state["status"] = _build()
    return _state["lib"]  # type: ignore[return-value]


def status() -> str:
    """``on (<path of the shared object>)``, or why the decoder uses torch ops instead (one phrase)."""
    library()
    return str(_state["status"])
