# Tidegate: collector (`tidegate serve`) and pipeline (`tidegate run`) in one image.
#
#   docker build -t tidegate .
#   docker run --rm -v $PWD/config:/etc/tidegate tidegate validate /etc/tidegate/tidegate.toml
#
# Stage 1 builds the wheel (Rust extension + Python package) with maturin; stage 2 is a slim
# Python runtime that installs exactly that wheel and its declared dependencies — the same set
# `pip install .` (README) installs, without the test extras and without a compiler.

FROM rust:1-slim-bookworm AS build
# Debian bookworm's python3 is 3.11, the runtime's version; the wheel is abi3 (>= 3.11).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/maturin && /opt/maturin/bin/pip install --no-cache-dir "maturin>=1.9,<2"
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY rust/ rust/
COPY python/ python/
# A stale extension from a local build must not end up in the wheel.
RUN rm -f python/tidegate/_core*.so \
 && /opt/maturin/bin/maturin build --release --locked --interpreter python3 --out /dist

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIDEGATE_CONFIG=/etc/tidegate/tidegate.toml
RUN useradd --system --uid 10001 --home-dir /var/lib/tidegate --create-home tidegate
COPY --from=build /dist/ /tmp/dist/
RUN pip install /tmp/dist/tidegate-*.whl && rm -rf /tmp/dist \
 && python -c "import tidegate._core"
# The example config and its tracking plans; mount your own over /etc/tidegate, and override
# single keys with TIDEGATE__<SECTION>__<KEY> environment variables (see docker-compose.yml).
COPY config/ /etc/tidegate/
WORKDIR /var/lib/tidegate
USER tidegate
VOLUME ["/var/lib/tidegate"]
# 8080: the collector's HTTP API; 9108: the pipeline's /metrics, /healthz, /readyz.
EXPOSE 8080 9108
# `tidegate run` finishes the current checkpoint on SIGTERM: sinks flushed, offsets committed,
# the archive buffer written. Give it time (docker stop -t / stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tidegate"]
CMD ["run"]
