# Stand-in for docker-compose.yml's redis image, which cannot be pulled where scripts/test-containers
# runs: Debian's redis-server (7.0), whose packages that script unpacks into this build's context
# (root/), on the Debian base it makes; run like the upstream image: it starts as root with
# docker-entrypoint.sh on the PATH (docker-compose.yml's redis entrypoint writes the service's
# password into a volume, then calls it), which runs redis-server as uid 999 with data in /data and
# protected mode off.
ARG BASE_IMAGE=portraitsr-test/debian-python:bookworm
FROM ${BASE_IMAGE}
COPY root/ /
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN useradd --system --uid 999 --user-group --no-create-home --home-dir /data --shell /usr/sbin/nologin redis \
 && mkdir -p /data && chown redis:redis /data \
 && redis-server --version && redis-cli --version
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
