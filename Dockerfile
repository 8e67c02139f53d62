# syntax=docker/dockerfile:1
# The tokenyard worker image, for Dask schedulers and workers and for Spark drivers and
# executors: Python 3.11, a Java 17 runtime for Spark, and the project with its spark and
# kubernetes extras. It runs as the non-root user 10001 and holds no credentials: pods get
# S3 access from their service account (EKS Pod Identity or IRSA).
#
#   docker build -t tokenyard:0.1.0 .
#   (multi-arch, for Graviton pools: docker buildx build --platform linux/amd64,linux/arm64 ...)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk \
    PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python \
    SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark \
    TOKENIZERS_PARALLELISM=false \
    HOME=/scratch \
    TMPDIR=/scratch

RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/java-17-openjdk \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tokenyard/src
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
RUN pip install ".[spark,kubernetes]" \
    && python -c "import pyspark, pipelines; print(pyspark.__version__)" \
    && test -d "${SPARK_HOME}/jars"

COPY cluster_specs/image/entrypoint.sh /opt/entrypoint.sh
COPY cluster_specs/image/decom.sh /opt/decom.sh
COPY cluster_specs/image/main.py /opt/tokenyard/main.py

RUN groupadd --gid 10001 tokenyard \
    && useradd --uid 10001 --gid 10001 --home-dir /scratch --no-create-home --shell /usr/sbin/nologin tokenyard \
    && mkdir -p /scratch && chown 10001:10001 /scratch

USER 10001:10001
WORKDIR /scratch
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/entrypoint.sh"]
CMD ["tokenyard", "--help"]
