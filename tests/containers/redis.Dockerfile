# Stand-in for docker-compose.yml's redis image, which cannot be pulled where scripts/test-containers
# runs: Debian's redis-server (7.0) from the tools image that script makes from Debian's archive,
# run like the upstream image (unprivileged, data in /data, protected mode off).
ARG TOOLS_IMAGE=portraitsr-test/debian-tools:bookworm
FROM ${TOOLS_IMAGE}
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
