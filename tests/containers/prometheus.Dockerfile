# Stand-in for docker-compose.yml's prometheus image, which cannot be pulled where
# scripts/test-containers runs: Debian's prometheus (2.42) from the tools image that script makes
# from Debian's archive, laid out like the upstream image (unprivileged, TSDB under /prometheus,
# which must be writable by its user; wget for the compose health check).
ARG TOOLS_IMAGE=portraitsr-test/debian-tools:bookworm
FROM ${TOOLS_IMAGE}
RUN mkdir -p /prometheus && chown prometheus:prometheus /prometheus
WORKDIR /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
