#!/usr/bin/env bash
# Configure and build the reference C++ simulation (heat_sim) against the ADIOS2 of the Python
# that runs this script (the PyPI wheel ships the C++ headers and a CMake config).
#
#   examples/cpp/build.sh [BUILD_DIR]      (default BUILD_DIR: <repo>/build/cpp)
#
# Environment: PYTHON (default: python3, else python), JOBS (default 2), CMAKE (default: the
# system cmake, else the one next to PYTHON, e.g. .venv/bin/cmake from `pip install cmake`).
# The last line of stdout is the path of the binary.  Nothing is rebuilt when the binary is
# newer than its sources (heat_sim.cpp, CMakeLists.txt, adapters/intransit_steering.hpp) and was
# built against the same ADIOS2.  The equivalent CMake invocation:
#
#   cmake -S examples/cpp -B BUILD_DIR -DCMAKE_BUILD_TYPE=Release \
#         -DADIOS2_DIR="$(python -c 'import adios2,os;print(os.path.dirname(adios2.__file__))')/cmake/adios2"
#   cmake --build BUILD_DIR -j2
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="${1:-$repo/build/cpp}"
jobs="${JOBS:-2}"

if [[ -z "${PYTHON:-}" ]]; then
    PYTHON="$(command -v python3 || command -v python || true)"
fi
if [[ -z "$PYTHON" ]]; then
    echo "build.sh: no python found (set PYTHON=/path/to/python with adios2 installed)" >&2
    exit 2
fi
if ! pkg="$("$PYTHON" -c 'import adios2,os;print(os.path.dirname(adios2.__file__))' 2>/dev/null)"; then
    echo "build.sh: $PYTHON cannot import adios2 (pip install adios2)" >&2
    exit 2
fi
adios2_dir="$pkg/cmake/adios2"
if [[ ! -f "$adios2_dir/adios2-config.cmake" && ! -f "$adios2_dir/ADIOS2Config.cmake" ]]; then
    echo "build.sh: no ADIOS2 CMake config in $adios2_dir (is this the PyPI adios2 wheel >= 2.10?)" >&2
    exit 2
fi

if [[ -z "${CMAKE:-}" ]]; then
    CMAKE="$(command -v cmake || true)"
    pybin="$(dirname "$PYTHON")"
    [[ -z "$CMAKE" && -x "$pybin/cmake" ]] && CMAKE="$pybin/cmake"
    [[ -z "$CMAKE" && -x "$repo/.venv/bin/cmake" ]] && CMAKE="$repo/.venv/bin/cmake"
fi
if [[ -z "$CMAKE" ]]; then
    echo "build.sh: cmake not found: install it (apt install cmake, or pip install cmake)" >&2
    exit 2
fi
cxx="${CXX:-}"
if [[ -z "$cxx" ]] && ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
    echo "build.sh: no C++ compiler found (c++, g++ or clang++; or set CXX)" >&2
    exit 2
fi

bin="$build/heat_sim"
stamp="$build/.adios2_dir"
up_to_date=1
[[ -x "$bin" ]] || up_to_date=0
for src in "$here/heat_sim.cpp" "$here/CMakeLists.txt" "$repo/adapters/intransit_steering.hpp"; do
    [[ $up_to_date == 1 && "$bin" -nt "$src" ]] || up_to_date=0
done
[[ $up_to_date == 1 && -f "$stamp" && "$(cat "$stamp")" == "$adios2_dir" ]] || up_to_date=0
if [[ $up_to_date == 1 ]]; then
    echo "build.sh: $bin is up to date" >&2
    echo "$bin"
    exit 0
fi

mkdir -p "$build"
start=$SECONDS
"$CMAKE" -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DADIOS2_DIR="$adios2_dir" >&2
"$CMAKE" --build "$build" -j "$jobs" >&2
echo "$adios2_dir" > "$stamp"
echo "build.sh: built $bin in $((SECONDS - start)) s" >&2
echo "$bin"
