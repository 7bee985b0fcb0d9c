#!/usr/bin/env bash
# Run inside `unshare --net` from an unpacked, installed bundle: brings up loopback only,
# starts ./start-api.sh, waits for /api/health, sends the README's "Try it" chat request and
# prints the stream, then stops the server. Used by test_bundle.py.
set -euo pipefail
ip link set lo up
echo "links: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')"
if curl -s --max-time 5 -o /dev/null https://pypi.org/simple/; then
  echo "outside: reachable"; exit 1
fi
echo "outside: unreachable"
./start-api.sh >server.log 2>&1 &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  if curl -sf http://127.0.0.1:8090/api/health >/dev/null; then break; fi
  kill -0 "$server" 2>/dev/null || { echo "server exited"; tail -n 40 server.log; exit 1; }
  sleep 1
done
curl -sf http://127.0.0.1:8090/api/health
echo
curl -sS -N -X POST http://127.0.0.1:8090/api/chat/stream -H "Content-Type: application/json" \
  -H "Accept: text/event-stream" --max-time 120 \
  -d '{"messages":[{"role":"user","content":"שלום! תוכל לספר לי בדיחה?"}],"stream":true,"max_tokens":24}'
