# Stand-in for docker-compose.yml's prometheus image, which cannot be pulled where
# scripts/test-containers runs: Debian's prometheus (2.42) and busybox (wget, for the compose
# health check), whose packages that script unpacks into this build's context (root/), on the
# Debian base it makes; laid out like the upstream image (uid 65534, TSDB under /prometheus, which
# must be writable by that user).
ARG BASE_IMAGE=portraitsr-test/debian-python:bookworm
FROM ${BASE_IMAGE}
COPY root/ /
RUN ln -s /usr/bin/busybox /usr/local/bin/wget \
 && mkdir -p /prometheus && chown 65534:65534 /prometheus \
 && prometheus --version
WORKDIR /prometheus
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
