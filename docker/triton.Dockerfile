# syntax=docker/dockerfile:1
#
# The Triton server image the charts' optional `triton` blocks run: NVIDIA's release plus the
# packages the Python-backend models import. The model repository (config.pbtxt + model.py +
# weights) is not in the image: scripts/ prepare it from a weights path onto a volume, which the
# charts mount read-only at /models (triton.modelRepository.existingClaim).
#
#   docker build -f docker/triton.Dockerfile -t REGISTRY/vigil-triton:24.10 .
#   helm ... --set triton.image.repository=REGISTRY/vigil-triton --set triton.image.tag=24.10
#
# 24.10 is Triton 2.51, the server the tests run (nvidia-pytriton 0.7.0 bundles it). Its Python
# is 3.10, not the project's 3.11, so requirements.lock cannot be reused as is (onnxruntime 1.31
# has no 3.10 wheel): docker/triton-requirements.txt pins this image's own set.

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY docker/triton-requirements.txt /tmp/triton-requirements.txt
RUN pip install -r /tmp/triton-requirements.txt && rm /tmp/triton-requirements.txt
# The NGC image's unprivileged user (uid 1000); the charts run it as 10001, which works as
# long as the model repository is world-readable.
USER 1000:1000
CMD ["tritonserver", "--model-repository=/models"]
