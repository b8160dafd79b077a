#!/usr/bin/env bash
# Builds the container images without a Docker engine or a public image registry and checks the CPU
# image end to end. Slow (minutes); not part of the default test run.
#
#   scripts/docker-check.sh            # Debian 12 base (debootstrap), CPU image, server check
#   scripts/docker-check.sh --cuda     # also the CUDA image, on bases holding the local CUDA toolkit
#   scripts/docker-check.sh --build-only [--cuda]   # build the images, skip the end-to-end check
#
# Steps: (1) a Debian 12 minbase root file system made by debootstrap (cached as a tarball) is
# imported as the image localhost/ntk-base:bookworm; (2) docker/Dockerfile.cpu is built with
# `buildah bud --isolation chroot` (no daemon, no registry) into localhost/ntkserve:cpu; (3) ntk-server
# is started inside the image with `buildah run --isolation chroot` (it shares the host's network, so it
# listens on a free loopback port); (4) from outside, the host's build/bin/ntkctl checks health, uploads
# a small data set, fits and predicts, and the metrics endpoint is read; (5) SIGTERM must stop the server
# cleanly. With --cuda: bases localhost/ntk-cuda-devel:13 and localhost/ntk-cuda-runtime:13 are made
# from the Debian base plus the parts of the local CUDA toolkit the build and the binaries need, then
# docker/Dockerfile.cuda is built and the same check runs against it (the server picks the CPU backend
# when no GPU is visible).
#
# Needs: root, buildah and debootstrap (Debian: apt-get install buildah debootstrap), the host build in
# build/ with ntkctl (cmake --build build --target ntkctl), python3 with numpy (.venv/bin/python or
# Debian's python3-numpy). --cuda needs nvcc (the toolkit is found from it, or from NTK_CUDA_HOME).
#
# Environment:
#   NTK_DOCKER_CACHE   cache directory (debootstrap tarball, logs, test data); default /var/tmp/ntk-docker
#   NTK_DEBIAN_MIRROR  Debian mirror for debootstrap; default http://deb.debian.org/debian
#   NTK_CUDA_HOME      CUDA toolkit to copy for --cuda; default: found from nvcc
#   NTK_CUDA_ARCH      CUDA architectures for the CUDA image; default 90
#   NTK_BUILD_JOBS     parallel jobs inside the image builds; default: all cores
#   NTK_HOST_NTKCTL    the client used from outside; default build/bin/ntkctl
#   NTK_PYTHON         python with numpy for the test data; default .venv/bin/python, then /usr/bin/python3
#   NTK_DOCKER_REBUILD_BASE=1  remake the base images (and the debootstrap tarball)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

cuda=0
build_only=0
for arg in "$@"; do
  case "$arg" in
    --cuda) cuda=1 ;;
    --build-only) build_only=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker-check: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

cache=${NTK_DOCKER_CACHE:-/var/tmp/ntk-docker}
mirror=${NTK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cuda_arch=${NTK_CUDA_ARCH:-90}
jobs=${NTK_BUILD_JOBS:-}
ntkctl=${NTK_HOST_NTKCTL:-$root/build/bin/ntkctl}
base_image=localhost/ntk-base:bookworm
cuda_devel_image=localhost/ntk-cuda-devel:13
cuda_runtime_image=localhost/ntk-cuda-runtime:13
t_start=$(date +%s)

log() { printf '\n== docker-check [%4ss]: %s\n' "$(( $(date +%s) - t_start ))" "$*"; }
fail() {
  printf '\ndocker-check: FAIL: %s\n' "$*" >&2
  exit 1
}
# Runs a slow command with its output in a log file; on failure shows the end of the log.
logged() {
  local name=$1; shift
  local file="$cache/logs/$name.log"
  if ! "$@" >"$file" 2>&1; then
    tail -n 40 "$file" >&2
    fail "$name failed (whole log: $file)"
  fi
}

################################################################################ preconditions
missing=()
command -v buildah >/dev/null || missing+=("buildah (apt-get install buildah)")
command -v debootstrap >/dev/null || missing+=("debootstrap (apt-get install debootstrap)")
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do echo "docker-check: missing tool: $m" >&2; done
  fail "install the missing tools (Debian 12: apt-get install buildah debootstrap) and run again"
fi
[ "$(id -u)" = 0 ] || fail "run as root: debootstrap and 'buildah mount' need it"
if [ "$build_only" = 0 ]; then
  [ -x "$ntkctl" ] || fail "no host client at $ntkctl: build it first (cmake --build build --target ntkctl)"
  "$ntkctl" --help 2>&1 | grep -qw health ||
    fail "$ntkctl has no 'health' command: it predates the server client; rebuild build/ from this tree"
fi
python=
for p in ${NTK_PYTHON:+"$NTK_PYTHON"} "$root/.venv/bin/python" /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy' >/dev/null 2>&1; then python=$p; break; fi
done
[ -n "$python" ] || [ "$build_only" = 1 ] ||
  fail "no python3 with numpy for the test data (apt-get install python3-numpy)"
cuda_home=
if [ "$cuda" = 1 ]; then
  if [ -n "${NTK_CUDA_HOME:-}" ]; then
    cuda_home=$NTK_CUDA_HOME
  elif command -v nvcc >/dev/null; then
    cuda_home=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  fi
  if [ -z "$cuda_home" ] || [ ! -x "$cuda_home/bin/nvcc" ]; then
    fail "--cuda: no CUDA toolkit (nvcc not on PATH; set NTK_CUDA_HOME)"
  fi
fi
for f in cpu cuda; do
  cmp -s docker/.dockerignore "docker/Dockerfile.$f.dockerignore" ||
    fail "docker/Dockerfile.$f.dockerignore differs from docker/.dockerignore (they must be copies)"
done
mkdir -p "$cache/logs" "$cache/data"

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

################################################################################ base image
make_rootfs_tarball() {
  local dir="$cache/rootfs.tmp"
  rm -rf "$dir"
  debootstrap --variant=minbase bookworm "$dir" "$mirror"
  # The release's updates and security fixes, as in Debian's own images.
  cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # The runtime supplies resolv.conf and hostname; drop the host's copies and the package caches.
  rm -f "$dir/etc/resolv.conf" "$dir/etc/hostname"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/* "$dir"/var/log/*.log
  tar -C "$dir" -cf "$cache/bookworm-minbase.tar.tmp" .
  mv "$cache/bookworm-minbase.tar.tmp" "$cache/bookworm-minbase.tar"
  rm -rf "$dir"
}

if [ "${NTK_DOCKER_REBUILD_BASE:-0}" = 1 ]; then
  rm -f "$cache/bookworm-minbase.tar"
  for i in "$base_image" "$cuda_devel_image" "$cuda_runtime_image"; do
    buildah rmi -f "$i" >/dev/null 2>&1 || true
  done
fi
if ! image_exists "$base_image"; then
  if [ ! -s "$cache/bookworm-minbase.tar" ]; then
    log "debootstrap --variant=minbase bookworm (cached in $cache/bookworm-minbase.tar)"
    logged debootstrap make_rootfs_tarball
  fi
  log "import the Debian 12 root file system as $base_image"
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" -xf "$cache/bookworm-minbase.tar"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash --label org.opencontainers.image.description="Debian 12 minbase (debootstrap)" "$ctr"
  log "apt-get upgrade in the base (bookworm-updates, bookworm-security)"
  logged base-upgrade buildah run --isolation chroot "$ctr" -- sh -c 'export DEBIAN_FRONTEND=noninteractive;
    apt-get update && apt-get -y upgrade && apt-get clean && rm -rf /var/lib/apt/lists/*'
  buildah commit --rm -q "$ctr" "$base_image" >/dev/null
fi
log "base image: $base_image ($(buildah inspect --type image --format '{{.FromImageID}}' "$base_image" | cut -c1-12))"

################################################################################ CUDA bases
# The parts of the toolkit that nvcc, CMake's FindCUDAToolkit and the project's link need (about
# 1.4 GB of the toolkit's 2.7 GB); the runtime base gets only the shared libraries the binaries load.
cuda_runtime_libs=(libcudart.so libcublas.so libcublasLt.so libcusolver.so libcurand.so
  libcusparse.so libnvJitLink.so)
# Paths relative to the toolkit's parent directory, so the image gets /usr/local/<toolkit dir name>.
cuda_files() {
  local kind=$1 rel l
  rel=$(basename "$cuda_home")
  cd "$(dirname "$cuda_home")"
  if [ "$kind" = devel ]; then
    printf '%s\n' "$rel/bin" "$rel/include" "$rel/nvvm" "$rel/targets" "$rel/lib64" "$rel/lib/cmake" \
      "$rel/lib/stubs" "$rel/lib/libcudart_static.a" "$rel/lib/libcudadevrt.a" "$rel/lib/libculibos.a"
    for l in "${cuda_runtime_libs[@]}"; do printf '%s\n' "$rel/lib/$l"*; done
  else
    for l in "${cuda_runtime_libs[@]}"; do printf '%s\n' "$rel/lib/$l".*; done
  fi
}
make_cuda_base() {
  local image=$1 kind=$2 ctr rel
  rel=$(basename "$cuda_home")
  ctr=$(buildah from --pull-never "$base_image")
  mnt=$(buildah mount "$ctr")
  mkdir -p "$mnt/usr/local"
  local files=()
  mapfile -t files < <(cuda_files "$kind")
  tar -C "$(dirname "$cuda_home")" -cf - "${files[@]}" | tar -C "$mnt/usr/local" -xf -
  [ "$rel" = cuda ] || ln -sfn "$rel" "$mnt/usr/local/cuda"
  echo /usr/local/cuda/lib >"$mnt/etc/ld.so.conf.d/cuda.conf"
  buildah umount "$ctr" >/dev/null
  buildah run --isolation chroot "$ctr" -- ldconfig
  buildah config --env PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env CUDA_HOME=/usr/local/cuda \
    --label org.opencontainers.image.description="Debian 12 minbase + local CUDA toolkit ($kind part of $cuda_home)" "$ctr"
  buildah commit --rm -q "$ctr" "$image" >/dev/null
}
if [ "$cuda" = 1 ]; then
  if ! image_exists "$cuda_devel_image"; then
    log "make $cuda_devel_image: $base_image + the toolkit parts of $cuda_home the build needs"
    logged cuda-devel-base make_cuda_base "$cuda_devel_image" devel
  fi
  if ! image_exists "$cuda_runtime_image"; then
    log "make $cuda_runtime_image: $base_image + the CUDA shared libraries the binaries load"
    logged cuda-runtime-base make_cuda_base "$cuda_runtime_image" runtime
  fi
fi

################################################################################ image builds
build_image() {
  local name=$1 dockerfile=$2; shift 2
  log "buildah bud -f $dockerfile -t $name (log: $cache/logs/build-${name##*:}.log)"
  local t0; t0=$(date +%s)
  logged "build-${name##*:}" buildah bud --isolation chroot --layers --format docker \
    --ignorefile docker/.dockerignore -f "$dockerfile" -t "$name" \
    ${jobs:+--build-arg BUILD_JOBS="$jobs"} "$@" .
  log "built $name in $(( $(date +%s) - t0 )) s, $(buildah images --format '{{.Size}}' "$name" | head -n 1)"
}
build_image localhost/ntkserve:cpu docker/Dockerfile.cpu --build-arg BASE_IMAGE="$base_image"
if [ "$cuda" = 1 ]; then
  build_image localhost/ntkserve:cuda docker/Dockerfile.cuda --build-arg BASE_IMAGE="$cuda_devel_image" \
    --build-arg RUNTIME_IMAGE="$cuda_runtime_image" --build-arg CUDA_ARCH="$cuda_arch"
fi

if [ "$build_only" = 1 ]; then
  log "PASS (build only): images built in $(( $(date +%s) - t_start )) s; end-to-end check skipped"
  exit 0
fi

################################################################################ end-to-end check
"$python" - "$cache/data" <<'EOF'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(5)
np.save(f"{d}/x.npy", rng.standard_normal((200, 16)))
np.save(f"{d}/y.npy", rng.integers(0, 3, size=200).astype(np.int64))
np.save(f"{d}/t.npy", rng.standard_normal((20, 16)))
EOF

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done
}

server_ctr=
server_job=
cleanup() {
  if [ -n "$server_job" ] && kill -0 "$server_job" 2>/dev/null; then
    for p in $(descendants "$server_job"); do kill "$p" 2>/dev/null || true; done
    kill "$server_job" 2>/dev/null || true
    wait "$server_job" 2>/dev/null || true
  fi
  [ -z "$server_ctr" ] || buildah rm "$server_ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# start_server IMAGE DATA_DIR LOG: ntk-server in a container of IMAGE with the image's entrypoint
# flags, loopback ports instead of 0.0.0.0:50051/9464 (chroot isolation shares the host's network),
# DATA_DIR as the data volume (as a named volume or a PVC would be), docker/config/ntkserve.yaml (the
# compose configuration) as --config and a token file. buildah run runs it as the image's user. Sets
# port and mport, waits until it is SERVING. A port taken between choosing and binding it (other
# processes on this machine pick free ports too) is retried with new ports, twice.
# When the metrics endpoint fails to start on two different free ports, that is recorded as a failure
# and the rest of the check runs with --metrics off.
port=
mport=
metrics_off=0
failures=()
start_server() {
  local image=$1 data=$2 srvlog=$3 i metrics metrics_failed=0
  for _ in 1 2 3 4; do
    port=$(free_port); mport=$(free_port)
    while [ "$mport" = "$port" ]; do mport=$(free_port); done
    metrics="127.0.0.1:$mport"
    [ "$metrics_off" = 0 ] || metrics=off
    echo "ntk-server on 127.0.0.1:$port, metrics on $metrics (log: $srvlog)"
    server_ctr=$(buildah from --pull-never "$image")
    # buildah 1.28 mounts an image VOLUME as an anonymous volume, and with several -v mounts it
    # sometimes puts that one on the volume's path instead of the -v bind mount (the data then vanish
    # with the container). Drop the VOLUME from this working container only; the image keeps it.
    buildah config --volume /var/lib/ntkserve- "$server_ctr"
    buildah run --isolation chroot \
      -v "$data:/var/lib/ntkserve" \
      -v "$root/docker/config/ntkserve.yaml:/etc/ntkserve/config.yaml:ro" \
      -v "$cache/data/tokens:/etc/ntkserve/tokens:ro" \
      "$server_ctr" -- ntk-server --listen "127.0.0.1:$port" --data-dir /var/lib/ntkserve \
      --metrics "$metrics" --config /etc/ntkserve/config.yaml --token-file /etc/ntkserve/tokens \
      >>"$srvlog" 2>&1 &
    server_job=$!
    for i in $(seq 1 60); do
      if "$ntkctl" --server "127.0.0.1:$port" health >/dev/null 2>&1; then return 0; fi
      kill -0 "$server_job" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$server_job" 2>/dev/null; then
      tail -n 20 "$srvlog" >&2
      fail "ntk-server in $image not SERVING after 30 s"
    fi
    wait "$server_job" || true
    server_job=
    buildah rm "$server_ctr" >/dev/null
    server_ctr=
    if tail -n 5 "$srvlog" | grep -q 'cannot serve metrics'; then
      metrics_failed=$((metrics_failed + 1))
      if [ "$metrics_failed" -ge 2 ]; then
        failures+=("$image: the metrics endpoint does not start on a free port: $(tail -n 5 "$srvlog" | grep -m1 'cannot serve metrics')")
        echo "docker-check: FAIL (recorded): the metrics endpoint does not start; the rest of the check runs with --metrics off" >&2
        metrics_off=1
      fi
    elif ! tail -n 5 "$srvlog" | grep -qiE 'bind|address already in use'; then
      break
    fi
    echo "again with new ports"
  done
  tail -n 20 "$srvlog" >&2
  fail "ntk-server in $image exited before it served"
}

# stop_server LOG: SIGTERM to ntk-server (not to buildah), which must drain and exit with status 0.
stop_server() {
  local srvlog=$1 pid i rc=0
  pid=$(for p in $(descendants "$server_job"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = ntk-server ] && echo "$p"; done | head -n 1)
  [ -n "$pid" ] || fail "cannot find the ntk-server process under buildah run"
  kill -TERM "$pid"
  for i in $(seq 1 60); do kill -0 "$server_job" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$server_job" 2>/dev/null && fail "ntk-server did not stop within 30 s of SIGTERM"
  wait "$server_job" || rc=$?
  server_job=
  [ "$rc" = 0 ] || { tail -n 20 "$srvlog" >&2; fail "ntk-server exited with status $rc after SIGTERM"; }
}

check_image() {
  local image=$1 tag=${1##*:}
  log "check $image: image configuration"
  local user entrypoint volumes ports health
  user=$(buildah inspect --type image --format '{{.Docker.Config.User}}' "$image")
  entrypoint=$(buildah inspect --type image --format '{{.Docker.Config.Entrypoint}}' "$image")
  volumes=$(buildah inspect --type image --format '{{.Docker.Config.Volumes}}' "$image")
  ports=$(buildah inspect --type image --format '{{.Docker.Config.ExposedPorts}}' "$image")
  health=$(buildah inspect --type image --format '{{.Docker.Config.Healthcheck}}' "$image")
  printf 'user %s\nentrypoint %s\nvolumes %s\nports %s\nhealthcheck %s\n' "$user" "$entrypoint" "$volumes" "$ports" "$health"
  [ "${user%%:*}" = 10001 ] || fail "$image does not run as the non-root user 10001 (User=$user)"
  [ "$entrypoint" = "[ntk-server --listen 0.0.0.0:50051 --data-dir /var/lib/ntkserve --metrics 0.0.0.0:9464]" ] ||
    fail "$image: unexpected entrypoint $entrypoint"
  [[ "$volumes" == *"/var/lib/ntkserve"* ]] || fail "$image: /var/lib/ntkserve is no VOLUME"
  [[ "$ports" == *"50051/tcp"*"9464/tcp"* ]] || fail "$image: ports 50051 and 9464 not exposed"
  [[ "$health" == *"ntkctl --server 127.0.0.1:50051 health"* ]] || fail "$image: no HEALTHCHECK"

  metrics_off=0
  local srvlog="$cache/logs/server-$tag.log" out="$cache/data/pred-$tag" data="$cache/data/volume-$tag"
  rm -rf "$out" "$out.2" "$data"
  : >"$srvlog"
  # The data volume belongs to the image's user, as fsGroup or a fresh named volume arrange.
  install -d -o 10001 -g 10001 -m 0750 "$data"
  # One API token: the data calls must carry it, the gRPC health service must answer without it (the
  # Kubernetes probes and the HEALTHCHECK send none).
  local token
  token="docker-check-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s docker-check\n' "$token" >"$cache/data/tokens"
  printf '%s' "$token" >"$cache/data/tokens.client"
  chmod 0644 "$cache/data/tokens"
  touch "$cache/data/stamp"

  log "check $image: ntk-server in the image"
  start_server "$image" "$data" "$srvlog"
  local ctl=("$ntkctl" --server "127.0.0.1:$port" --token-file "$cache/data/tokens.client")
  "$ntkctl" --server "127.0.0.1:$port" health --json || fail "health"
  if "$ntkctl" --server "127.0.0.1:$port" datasets >/dev/null 2>&1; then
    fail "the server in $image answered a data call without a token (--token-file ignored?)"
  fi
  echo "health answers without a token; a data call without one is refused"

  log "check $image: upload, fit, predict from outside with $ntkctl"
  "${ctl[@]}" upload --name docker-check --x "$cache/data/x.npy" --labels "$cache/data/y.npy" || fail "upload"
  local fit_json model
  fit_json=$("${ctl[@]}" fit --dataset docker-check --lambda 1e-3 --depth 3 --w-std 1.5 --b-std 0.1 \
    --json --quiet) || fail "fit"
  echo "$fit_json"
  model=$(printf '%s' "$fit_json" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["model"])') ||
    fail "fit --json printed no model id"
  "${ctl[@]}" predict --model "$model" --x "$cache/data/t.npy" --out-dir "$out" || fail "predict"
  "$python" - "$out" <<'EOF' || fail "predict outputs"
import sys, numpy as np
d = sys.argv[1]
logits, probs = np.load(f"{d}/logits.npy"), np.load(f"{d}/probs.npy")
assert logits.shape == (20, 3) and probs.shape == (20, 3), (logits.shape, probs.shape)
assert np.all(np.isfinite(logits)) and np.allclose(probs.sum(axis=1), 1.0), "probs rows do not sum to 1"
print(f"predict: logits {logits.shape}, probs {probs.shape}, rows sum to 1")
EOF
  [ "$metrics_off" = 1 ] || "$python" - "$mport" <<'EOF' || fail "metrics endpoint"
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
families = [l.split()[2] for l in body.splitlines() if l.startswith("# TYPE")]
ours = [f for f in families if f.startswith("ntkserve_")]
assert ours, "no ntkserve_ metrics"
print(f"metrics: {len(families)} families, {len(ours)} ntkserve_*, e.g. {', '.join(ours[:3])}")
EOF

  log "check $image: SIGTERM drains and stops the server; the model survives a restart on the volume"
  stop_server "$srvlog"
  local stored
  stored=$(find "$data" -type f | wc -l)
  echo "files in the data volume: $stored"
  [ "$stored" -gt 0 ] || fail "nothing was stored under /var/lib/ntkserve"
  buildah rm "$server_ctr" >/dev/null
  server_ctr=
  start_server "$image" "$data" "$srvlog"
  ctl=("$ntkctl" --server "127.0.0.1:$port" --token-file "$cache/data/tokens.client")
  "${ctl[@]}" models | grep -q "$model" || fail "model $model is gone after the restart"
  "${ctl[@]}" predict --model "$model" --x "$cache/data/t.npy" --out-dir "$out.2" >/dev/null ||
    fail "predict after the restart"
  cmp -s "$out/probs.npy" "$out.2/probs.npy" || fail "predictions differ after the restart"
  echo "after the restart: model $model listed, identical predictions"
  stop_server "$srvlog"

  # What the server wrote into the container outside its volume (the Kubernetes Deployment runs it
  # with a read-only root file system and an emptyDir on /tmp). /etc/ntkserve holds the mount points of
  # the bind-mounted config and token files.
  local mnt written
  mnt=$(buildah mount "$server_ctr")
  written=$(cd "$mnt" && find . -xdev -newer "$cache/data/stamp" -not -type d -not -path './proc/*' \
    -not -path './sys/*' -not -path './dev/*' -not -path './run/*' -not -path './etc/ntkserve/*' | head -n 20)
  buildah umount "$server_ctr" >/dev/null
  echo "written into the container outside the volume: ${written:-nothing}"
  [ -z "$written" ] || fail "ntk-server in $image wrote outside /var/lib/ntkserve: $written"
  buildah rm "$server_ctr" >/dev/null
  server_ctr=
  if [ "$metrics_off" = 1 ]; then log "check $image: done; failed: the metrics endpoint (recorded above)"
  else log "check $image: passed"; fi
}

check_image localhost/ntkserve:cpu
[ "$cuda" = 0 ] || check_image localhost/ntkserve:cuda

if [ ${#failures[@]} -gt 0 ]; then
  for f in "${failures[@]}"; do echo "docker-check: failed: $f" >&2; done
  fail "${#failures[@]} check(s) failed (above); everything else passed, in $(( $(date +%s) - t_start )) s"
fi
log "PASS: $([ "$cuda" = 1 ] && echo 'CPU and CUDA images' || echo 'CPU image') built and checked in $(( $(date +%s) - t_start )) s"
