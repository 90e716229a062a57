#!/bin/sh
# docker-entrypoint.sh of the stand-in, doing what upstream's does: start as root (so that a compose
# entrypoint can prepare mounted volumes first), give /data to the redis user, and run redis-server
# as that user. Upstream's image is also built with protected mode off (the container network is
# the boundary); Debian's redis-server has it on, so it is turned off here.
set -e
case "$1" in -*) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find /data \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
