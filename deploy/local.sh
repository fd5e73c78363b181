#!/usr/bin/env bash
# One machine: the reference simulation (N writer ranks) and an intransit
# analytics job (M ranks) over a live SST stream, launched as TWO MPI jobs.
#
#   deploy/local.sh                         # serial wheel (.venv): 1 sim process with N blocks, M readers
#   deploy/local.sh --venv .venv-mpi -n 3 -m 2   # MPI ADIOS2: 3 writer ranks, 2 ranks as one reader cohort
#   deploy/local.sh --venv .venv-mpi --transport MPI   # SST's MPI data plane (sets MPIR_CVAR_CH4_NETMOD=ofi)
#
# Why two launches and not `mpiexec -n N sim : -n M intransit` (MPMD)? MPMD puts
# both programs in ONE MPI_COMM_WORLD, and both the simulation and intransit
# use COMM_WORLD as their own: the writer would count the analytics ranks as
# writers. Separate launches give each its own world; SST connects them
# through the <stream>.sst contact file (the same on a Slurm heterogeneous job:
# deploy/slurm_hetjob.sbatch).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
N=3 M=2 STEPS=50 SIZE=256 TRANSPORT=WAN OUT=$ROOT/out/local POLICY=Block
usage() { sed -n '2,14p' "$0"; echo "options: --venv DIR -n N -m M --steps S --size Z --transport WAN|MPI --keep-pace --out DIR"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --venv) VENV=$(cd -- "$2" && pwd); shift 2 ;;
        -n) N=$2; shift 2 ;;
        -m) M=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --keep-pace) POLICY=Discard; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
PY=$VENV/bin/python MPIEXEC=$VENV/bin/mpiexec INTRANSIT=$VENV/bin/intransit
[[ -x $PY && -x $INTRANSIT ]] || { echo "no intransit in $VENV: run make install (or make adios2-mpi for .venv-mpi)" >&2; exit 2; }

HAS_MPI=$("$PY" -c 'import adios2; print(int(bool(adios2.is_built_with_mpi)))')
# How many readers the writer must wait for (lossless start): the MPI cohort is one.
READERS=$("$PY" -c "from intransit.adapters.cohort import readers_seen_by_writer as r; print(r($M))")
if [[ ${TRANSPORT^^} == MPI ]]; then
    [[ $HAS_MPI == 1 ]] || { echo "DataTransport=MPI needs an MPI-enabled ADIOS2 (make adios2-mpi); use --transport WAN" >&2; exit 2; }
    # The PyPI MPICH opens MPI ports only with its ofi network module; every process needs it.
    export MPIR_CVAR_CH4_NETMOD=ofi
fi

mkdir -p "$OUT"
STREAM=$OUT/fields
rm -f "$STREAM.sst"   # a stale contact file from a killed writer misleads readers
QUEUE=2; [[ $POLICY == Discard ]] && QUEUE=3
cat > "$OUT/sim.xml" <<EOF
<?xml version="1.0"?>
<adios-config>
  <io name="SimulationOutput">
    <engine type="SST">
      <parameter key="RendezvousReaderCount" value="$([[ $POLICY == Discard ]] && echo 0 || echo "$READERS")"/>
      <parameter key="QueueLimit" value="$QUEUE"/>
      <parameter key="QueueFullPolicy" value="$POLICY"/>
      <parameter key="DataTransport" value="$TRANSPORT"/>
    </engine>
  </io>
</adios-config>
EOF
cat > "$OUT/analytics.xml" <<EOF
<?xml version="1.0"?>
<adios-config>
  <io name="SimulationOutput">
    <engine type="SST">
      <parameter key="DataTransport" value="$TRANSPORT"/>
    </engine>
  </io>
</adios-config>
EOF
cat > "$OUT/job.toml" <<EOF
[stream]
name = "$STREAM"
xml = "$OUT/analytics.xml"
io = "SimulationOutput"
variables = ["density"]
step_timeout_s = 120
open_timeout_s = 120

[[analyzers]]
type = "blob_detection"
name = "blobs"
params = { threshold = 3.0, min_area = 4, periodic = [true, false] }

[[analyzers]]
type = "tracking"
input = "blobs"
params = { max_distance = 8.0, max_gap = 2, periodic = [true, false] }

[output]
catalog = "$OUT/catalog.bp"
metrics = "$OUT/summary.json"
EOF

SIM_ARGS=(--xml "$OUT/sim.xml" --stream "$STREAM" --size "$SIZE" --steps "$STEPS" --truth "$OUT/truth.csv" --blocks "$N" -q)
if [[ $HAS_MPI == 1 ]]; then
    SIM=("$MPIEXEC" -n "$N" "$PY" "$ROOT/examples/blob_sim.py" "${SIM_ARGS[@]}")
    mode="one reader cohort of $M ranks (the writer waits for $READERS reader)"
else
    SIM=("$PY" "$ROOT/examples/blob_sim.py" "${SIM_ARGS[@]}")   # serial wheel: one process writes all N blocks
    mode="$M independent readers (serial ADIOS2; the writer waits for $READERS)"
fi
AN=("$MPIEXEC" -n "$M" "$INTRANSIT" run "$OUT/job.toml")
[[ $M == 1 ]] && AN=("$INTRANSIT" run "$OUT/job.toml")

echo "ADIOS2 with MPI: $HAS_MPI; analytics: $mode; DataTransport=$TRANSPORT"
sim_pid= an_pid=
trap 'kill $sim_pid $an_pid 2>/dev/null || true; rm -f "$STREAM.sst"' INT TERM
start_analytics() {
    echo "analytics:  ${AN[*]}   (log $OUT/analytics.log)"
    "${AN[@]}" > "$OUT/analytics.log" 2>&1 &
    an_pid=$!
}
# Keep-pace: the simulation does not wait for readers, so the analytics go first. Lossless:
# the simulation goes first and the analytics start once its contact file is there (its
# Open then waits for them): however long its start-up takes (the turbulence warm-up can
# take minutes on a loaded machine), the analytics' open timeout is not spent waiting for it.
[[ $POLICY == Discard ]] && start_analytics
echo "simulation: ${SIM[*]}   (log $OUT/sim.log)"
"${SIM[@]}" > "$OUT/sim.log" 2>&1 &
sim_pid=$!
if [[ -z $an_pid ]]; then
    while [[ ! -e $STREAM.sst ]] && kill -0 "$sim_pid" 2>/dev/null; do sleep 0.2; done
    start_analytics
fi
# Whichever ends first: analytics that fail leave a lossless simulation nobody reads: stop it.
while kill -0 "$sim_pid" 2>/dev/null && kill -0 "$an_pid" 2>/dev/null; do sleep 0.5; done
rc_an=0 an_done=0
if ! kill -0 "$an_pid" 2>/dev/null; then
    wait "$an_pid" || rc_an=$?
    an_done=1
    if [[ $rc_an != 0 ]] && kill -0 "$sim_pid" 2>/dev/null; then
        echo "analytics failed (exit $rc_an): stopping the simulation" >&2
        kill "$sim_pid" 2>/dev/null || true
    fi
fi
rc_sim=0; wait "$sim_pid" || rc_sim=$?
[[ $an_done == 1 ]] || wait "$an_pid" || rc_an=$?
rm -f "$STREAM.sst"
echo "simulation exit $rc_sim, analytics exit $rc_an"
[[ $rc_sim == 0 && $rc_an == 0 ]] || { tail -n 20 "$OUT/sim.log" "$OUT/analytics.log" >&2; exit 1; }
"$INTRANSIT" report "$OUT/catalog.bp" | tail -5 || true
