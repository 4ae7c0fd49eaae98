#!/usr/bin/env bash
# Install OpenPifPaf 0.13.11 (the whole-body detector H3WB used) from source against the torch already installed.
#
# OpenPifPaf ships no Linux wheels and its metadata pins torch 1.13.1 / torchvision 0.14.1, which current pips
# cannot resolve. So, as its own docs suggest for other torch versions, it is compiled against the installed
# torch: the pinned source archive is downloaded and checked against its sha256, its C++ extension is built with
# the C++ standard the installed torch headers need (recent torch requires C++20; 0.13.11 asks for C++17), and it
# is installed with --no-deps (its runtime dependencies come from the project's `openpifpaf` extra).
#
# The compiled wheel is cached, keyed by the OpenPifPaf version, the torch version, the Python version and the
# machine: ${BUILD_H3WB_WHEELS:-~/.cache/build_h3wb/wheels}/openpifpaf-<version>-torch<torch>-py<python>-<machine>/.
# The next set-up with the same key installs that wheel without compiling.
#
# Usage: scripts/install_openpifpaf.sh [PYTHON]   (default: python3; idempotent)
set -euo pipefail
PY=${1:-python3}
VERSION=0.13.11
SHA256=f15936201fe5180fddda9e42437d4c41d6884e6130387e9e67dfc79240dcc61b

if "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('openpifpaf') != '$VERSION')" 2>/dev/null \
   && "$PY" -c "import openpifpaf" 2>/dev/null; then
    echo "openpifpaf $VERSION already installed"
    exit 0
fi
"$PY" -c "import torch" || { echo "install torch first (pip install -e '.[openpifpaf]')" >&2; exit 1; }

torch_version=$("$PY" -c "import torch; print(torch.__version__)")
py_version=$("$PY" -c "import sys; print('%d.%d' % sys.version_info[:2])")
cache_root=${BUILD_H3WB_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/build_h3wb/wheels}
cache="$cache_root/openpifpaf-$VERSION-torch$torch_version-py$py_version-$(uname -m)"

wheel=$(ls "$cache"/openpifpaf-"$VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then
    echo "installing the cached openpifpaf $VERSION wheel built against torch $torch_version: $wheel"
    "$PY" -m pip install --quiet --no-deps --no-index "$wheel"
    "$PY" -c "import openpifpaf; print('openpifpaf', openpifpaf.__version__, 'installed (cached wheel)')"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation "openpifpaf==$VERSION" -d "$work"
archive="$work/openpifpaf-$VERSION.tar.gz"
echo "$SHA256  $archive" | sha256sum --check --quiet
tar -xzf "$archive" -C "$work"
src="$work/openpifpaf-$VERSION"
# the standard the installed torch headers demand (ATen.h says "C++20 or later ... is required" on recent torch)
aten=$("$PY" -c "import os, torch.utils.cpp_extension as e; print(os.path.join(e.include_paths()[0], 'ATen', 'ATen.h'))")
if grep -q "C++20" "$aten"; then cxx_std=c++20; else cxx_std=c++17; fi
sed -i "s/-std=c++17/-std=$cxx_std/" "$src/setup.py"
echo "building openpifpaf $VERSION against torch $torch_version ($cxx_std); takes 1-3 minutes, once per key"
start=$(date +%s)
MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --quiet --no-build-isolation --no-deps "$src" -w "$work/wheel"
echo "openpifpaf compiled in $(( $(date +%s) - start )) s"
built=$(ls "$work"/wheel/openpifpaf-"$VERSION"-*.whl)
# cache it atomically (a half-copied wheel is never found), before installing: a failing import below means missing
# runtime dependencies (the `openpifpaf` extra), not a bad build
mkdir -p "$cache"
cp "$built" "$cache/.partial.whl"
mv "$cache/.partial.whl" "$cache/$(basename "$built")"
echo "cached $cache/$(basename "$built")"
"$PY" -m pip install --quiet --no-deps --no-index "$built"
"$PY" -c "import openpifpaf; print('openpifpaf', openpifpaf.__version__, 'installed')"
