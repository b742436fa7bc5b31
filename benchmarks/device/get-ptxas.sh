#!/usr/bin/env bash
# Prints the path of NVIDIA's ptxas (CUDA 11.8, from Debian bookworm's non-free nvidia-cuda-toolkit),
# downloading and unpacking the package into DIR (default ~/.cache/pvlr/cuda) on first use. Nothing is
# installed: a private apt source list adds non-free, `apt-get download` fetches the .deb, `dpkg-deb -x`
# unpacks it; the package's cuobjdump lands beside ptxas. Exits non-zero where that cannot be done (no apt,
# no network).
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pvlr/cuda}
if [ -x "$dir/x/usr/bin/ptxas" ]; then echo "$dir/x/usr/bin/ptxas"; exit 0; fi
mkdir -p "$dir/lists/partial" "$dir/cache"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm non-free" > "$dir/sources.list"
opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache")
apt-get "${opts[@]}" update -qq >&2
(cd "$dir" && apt-get "${opts[@]}" download nvidia-cuda-toolkit >&2)
dpkg-deb -x "$dir"/nvidia-cuda-toolkit_*.deb "$dir/x"
rm -f "$dir"/nvidia-cuda-toolkit_*.deb
echo "$dir/x/usr/bin/ptxas"
