#!/bin/sh
# Upstream's redis image is built with protected mode off (the container network is the boundary);
# Debian's redis-server has it on, which refuses the other containers when no password is set.
if [ "$1" = redis-server ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
