#!/usr/bin/env bash
# The tests need a redis-server binary (they start their own when none answers at
# REDIS_URL). Install Debian's package when it is missing.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
if command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "ensure_redis: installing redis-server with apt-get" >&2
  $sudo apt-get update -q && $sudo apt-get install -y -q redis-server
  command -v redis-server >/dev/null && exit 0
fi
echo "ensure_redis: redis-server is missing; install Redis (https://redis.io/docs/latest/operate/oss_and_stack/install/)" >&2
exit 1
