#!/usr/bin/env bash
# Issue 6 benchmark: a container job's start→finish through Archon against plain
# `docker run --rm` of the same image from the Docker CLI, in the same run.
#
#   benches/docker.sh [RUNS]      (default 40 timed runs per command, 5 warm-ups)
#
# Starts a release `archon dev` (temporary data dir, free loopback port) and times,
# with hyperfine, whole CLI processes (connect, create, start, wait for the exit,
# remove), in two like-for-like pairs:
#   archon       archon submit --docker IMG --cpu 2 --memory 1GiB --wait -- true
#   docker       docker run --rm --network none IMG true
#       (limits that do not bind on this 2-core machine, against no limits)
#   archon-100m  archon submit --docker IMG --wait -- true
#   docker-100m  docker run --rm --init --network none --cpus 0.1 --memory 64m
#                --memory-swap 64m --pids-limit 4096 IMG true
#       (the default job request, 100m CPU and 64 MiB, against the same settings:
#        a 0.1 CPU quota throttles container start-up itself, ~60 ms)
# Three rounds, the order rotating, so drift hits every command alike.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-40}

if ! command -v hyperfine >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine
fi
scripts/docker-images
cargo build -q --release --locked --bin archon

image=archon-test/busybox:1
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/archon dev --listen "127.0.0.1:$port" --data-dir "$dir/dev" >"$dir/dev.log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  grep -q "gRPC API listening" "$dir/dev.log" && break
  sleep 0.1
done
grep -q "Docker jobs run on the engine" "$dir/dev.log" || { cat "$dir/dev.log"; echo "dev has no Docker" >&2; exit 1; }

submit="target/release/archon --server http://127.0.0.1:$port submit --docker $image --wait"
declare -A cmd=(
  [archon]="$submit --cpu 2 --memory 1GiB -- true"
  [docker]="docker run --rm --network none $image true"
  [archon-100m]="$submit -- true"
  [docker-100m]="docker run --rm --init --network none --cpus 0.1 --memory 64m --memory-swap 64m --pids-limit 4096 $image true"
)

echo "machine: $(nproc) cores, $(uname -r), $(docker version --format 'engine {{.Server.Version}}')," \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
for order in "archon docker archon-100m docker-100m" "docker archon-100m docker-100m archon" \
  "archon-100m docker-100m archon docker"; do
  args=()
  for name in $order; do
    args+=(-n "$name" "${cmd[$name]}")
  done
  hyperfine -N --warmup 5 --runs "$runs" --style basic "${args[@]}" 2>&1 | grep -E "^(Benchmark|  Time|  Range)"
done
left=$(docker ps -aq --filter label=archon.managed=true | wc -l)
echo "containers left by Archon: $left"
