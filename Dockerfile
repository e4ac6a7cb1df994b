# blobgc server image. Nothing is pulled: the image is FROM scratch and holds
# only the static binary, so it is built from a context that contains just
# that binary. Build it with scripts/docker-image.sh.
FROM scratch
COPY blobgc /blobgc
# Raft log, stable store and snapshots; mount a volume here.
VOLUME ["/data"]
# 7000: gRPC API and raft; 9000: HTTP /metrics.
EXPOSE 7000 9000
ENV BLOBGC_DATA_DIR=/data \
    BLOBGC_LISTEN=0.0.0.0:7000
# No shell in the image: the health check is the binary itself. It passes when
# this server answers and the cluster it belongs to has a leader. The server
# needs TLS (BLOBGC_TLS_CERT, BLOBGC_TLS_KEY, BLOBGC_TLS_CA, from
# `blobgc tls init`) or BLOBGC_INSECURE=true; with TLS, BLOBGC_TLS_CA also
# reaches this check (docker-compose.yml shows the whole set-up).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/blobgc", "health", "--addr", "127.0.0.1:7000", "--servers", "127.0.0.1:7000", "--timeout", "3s"]
ENTRYPOINT ["/blobgc"]
CMD ["server"]
