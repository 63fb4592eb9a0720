#!/usr/bin/env bash
# Measures batch provisioning on this machine: a fresh CA (release build, SQLite) on ephemeral
# ports, one station, N registered patient monitors, `enroll-client provision` at concurrency C,
# all on the same host. Prints the client's summary, its CPU time, and the server's CPU time
# and peak RSS from /proc.
#
#   bash bench/provision.sh            # N=10000 C=32
#   N=2000 C=64 bash bench/provision.sh
set -euo pipefail
N=${N:-10000}
C=${C:-32}
cd "$(dirname "$0")/.."
cargo build --release -q -p ca-server -p enroll-client
B=$PWD/target/release
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

"$B/ca-server" init --data-dir ca --listen 127.0.0.1:18443 --http-listen 127.0.0.1:18080 >/dev/null 2>&1
"$B/ca-server" serve --data-dir ca >serve.log 2>&1 &
server=$!
for _ in $(seq 50); do curl -sk https://127.0.0.1:18443/.well-known/est/cacerts >/dev/null && break; sleep 0.1; done

token=$("$B/ca-server" --data-dir ca station create --name bench-line1-st01 \
  --products example-patient-monitor --rate-limit 1000000/h 2>/dev/null)
"$B/enroll-client" enroll --server https://localhost:18443 --ca-cert ca/root.pem \
  --serial bench-line1-st01 --token "$token" --out station >/dev/null
{ echo serial,product; for i in $(seq 0 $((N - 1))); do echo "PM$((71000000 + i)),example-patient-monitor"; done; } >devices.csv
"$B/ca-server" --data-dir ca device register --csv devices.csv >/dev/null 2>&1
tail -n +2 devices.csv | cut -d, -f1 >serials.txt

ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(ticks)
/usr/bin/time -f "client CPU: user %U s, system %S s" "$B/enroll-client" provision \
  --server https://localhost:18443 --ca-cert ca/root.pem --station station \
  --serials serials.txt --out out --concurrency "$C" --quiet 2>&1 | tail -2
after=$(ticks)
hz=$(getconf CLK_TCK)
echo "server CPU: $(( (after - before) * 1000 / hz )) ms for $N certificates; peak RSS $(awk '/VmHWM/ {print $2}' "/proc/$server/status") kB"
