#!/usr/bin/env bash
# Build the peer for benchmarks/peer_bench.py: llama.cpp's llama-server, llama-bench and llama-quantize from the
# llama.cpp tree vendored in the llama-cpp-python sdist (the package registry is the only reachable source).
# Benchmark-only: nothing in `make install` needs it. Cached: a second run with the same version does nothing.
#
#   benchmarks/build_llama_cpp.sh            # -> .compactlm/llama.cpp/<version>/build/bin/llama-server ...
#   LLAMA_CPP_PYTHON_VERSION=0.3.36 LLAMA_CPP_DIR=/opt/llama.cpp benchmarks/build_llama_cpp.sh
#
# Flags: -DGGML_NATIVE=ON builds binaries that die with "Illegal instruction" on this VM (its CPU advertises
# AVX-512 features the hypervisor does not run), so the build targets AVX2+FMA+F16C+AVX-VNNI explicitly (see
# ../shared/ENVIRONMENT-NOTES.md): the same instruction sets as the engine's native int8/int4 kernels
# (compactlm/serving/engine/native/), so neither side has wider SIMD. A build with other flags is rebuilt.
# ~10 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ROOT=${LLAMA_CPP_DIR:-.compactlm/llama.cpp}/$VERSION
PIP=${PIP:-.venv/bin/pip}
JOBS=${JOBS:-$(nproc)}
BIN="$ROOT/build/bin"
say() { printf '[build-llama.cpp] %s\n' "$*" >&2; }

FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=OFF"
if [[ -x $BIN/llama-server && -x $BIN/llama-bench && -x $BIN/llama-quantize && -f $ROOT/build/.complete
      && "$(cat "$ROOT/build/.complete")" == "$FLAGS" ]]; then
  say "cached: $BIN (delete $ROOT to rebuild)"; echo "$BIN"; exit 0
fi
command -v cmake >/dev/null || { say "cmake is missing (apt-get install -y cmake g++)"; exit 2; }
mkdir -p "$ROOT"
if [[ ! -d $ROOT/src/vendor/llama.cpp ]]; then
  say "downloading the llama-cpp-python $VERSION sdist (~77 MB) from the package index"
  "$PIP" download "llama-cpp-python==$VERSION" --no-deps --no-binary :all: -d "$ROOT/sdist" -q
  rm -rf "$ROOT/src.tmp"; mkdir -p "$ROOT/src.tmp"
  tar -xzf "$ROOT"/sdist/llama_cpp_python-"$VERSION".tar.gz -C "$ROOT/src.tmp" --strip-components=1
  mv "$ROOT/src.tmp" "$ROOT/src"   # complete or absent: never half-extracted
fi
SRC="$ROOT/src/vendor/llama.cpp"
say "configuring $SRC (AVX2/FMA/F16C/AVX-VNNI, no native, no AVX-512, Release)"
rm -f "$ROOT/build/.complete"
# shellcheck disable=SC2086  # FLAGS is a list of -D options
cmake -S "$SRC" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release $FLAGS -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >"$ROOT/configure.log" 2>&1 \
  || { say "cmake configure failed; see $ROOT/configure.log"; exit 1; }
start=$SECONDS
say "building llama-server llama-bench llama-quantize with $JOBS jobs (several minutes on 2 cores; log $ROOT/build.log)"
cmake --build "$ROOT/build" -j "$JOBS" --target llama-server llama-bench llama-quantize >"$ROOT/build.log" 2>&1 \
  || { say "build failed; see $ROOT/build.log"; exit 1; }
"$BIN/llama-bench" --help >/dev/null 2>&1 || { say "$BIN/llama-bench does not run on this CPU"; exit 1; }
# convert_hf_to_gguf.py imports sentencepiece before it falls back to the BPE tokenizer SmolLM2 has
"$PIP" install -q "sentencepiece>=0.2" || { say "could not install sentencepiece (for convert_hf_to_gguf.py)"; exit 1; }
echo "$FLAGS" > "$ROOT/build/.complete"
say "built in $(( SECONDS - start )) s: $BIN"
echo "$BIN"
