#!/bin/sh
# pip install inside an image build (infra/Dockerfile*, mounted at /tmp/infra by RUN --mount):
#   sh /tmp/infra/pip-install.sh [--torch] [--deps] [ARGS...]     all with `pip install -c constraints.txt`
# --torch  the CPU build of the torch version in constraints.txt: a wheel in infra/wheels/ when there is one
#          (infra/images.sh links a local one there), else from TORCH_INDEX_URL (PyPI's default torch is the
#          multi-GB CUDA build)
# --deps   the [project] dependencies of pyproject.toml, so that layer is rebuilt only when they change
# ARGS     anything else, e.g. --no-deps -e .
# A CA bundle passed as the BuildKit secret pip_cert (for a TLS-inspecting proxy) serves this step only:
# secrets are not stored in layers.
set -eu
if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi
if [ "${1:-}" = --torch ]; then
  shift
  version=$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' constraints.txt)
  [ -n "$version" ] || { echo "pip-install.sh: no torch==VERSION line in constraints.txt" >&2; exit 1; }
  wheel=$(ls /tmp/infra/wheels/torch-"$version"+cpu-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ]; then pip install -c constraints.txt "$wheel"
  else pip install --index-url "${TORCH_INDEX_URL:?}" --extra-index-url https://pypi.org/simple \
    -c constraints.txt "torch==$version+cpu"; fi
fi
if [ "${1:-}" = --deps ]; then
  shift
  python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    > /tmp/requirements.txt
  pip install -c constraints.txt -r /tmp/requirements.txt
  rm /tmp/requirements.txt
fi
if [ $# -gt 0 ]; then pip install -c constraints.txt "$@"; fi
