#!/usr/bin/env bash
# Install OpenPifPaf 0.13.11 (the whole-body detector H3WB used) from source against the torch already installed.
#
# OpenPifPaf ships no Linux wheels and its metadata pins torch 1.13.1 / torchvision 0.14.1, which current pips
# cannot resolve. So, as its own docs suggest for other torch versions, it is compiled against the installed
# torch: the pinned source archive is downloaded and checked against its sha256, its C++ extension is built with
# the C++ standard the installed torch headers need (recent torch requires C++20; 0.13.11 asks for C++17), and it
# is installed with --no-deps (its runtime dependencies come from the project's `openpifpaf` extra).
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
echo "building openpifpaf $VERSION against torch $("$PY" -c 'import torch; print(torch.__version__)') ($cxx_std); takes 1-3 minutes"
MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip install --quiet --no-build-isolation --no-deps "$src"
"$PY" -c "import openpifpaf; print('openpifpaf', openpifpaf.__version__, 'installed')"
