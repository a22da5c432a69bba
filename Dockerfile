# The Lambda image: AWS's Python base image (Amazon Linux 2023), the runtime requirements
# only (headless OpenCV: the GUI build needs libGL, which Lambda lacks), the service modules.
# One architecture per image (Lambda rejects manifest lists): build with
#   docker buildx build --platform linux/arm64 --provenance=false .   (or linux/amd64)
FROM public.ecr.aws/lambda/python:3.12

# Performance (memory): glibc gives each decoding thread a malloc arena of its own, so
# freed frame buffers end up scattered over heaps that never shrink: two arenas. (Mapping
# every buffer of 256 KiB or more, MALLOC_MMAP_THRESHOLD_=262144, saved 5-18 MiB more but
# now that every frame is converted to a full-size BGR image, an mmap and munmap each,
# it cost 9.3-10.3 -> 13.4-14.0 s on a 60 s 1080x1920 reel.) glibc reads it at start.
ENV MALLOC_ARENA_MAX=2

COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --only-binary=:all: -r "${LAMBDA_TASK_ROOT}/requirements.txt"

COPY app.py config.py cpus.py extract.py decode.py detect.py transitions.py quality.py choose.py output.py ${LAMBDA_TASK_ROOT}/
# Performance (cold start): Lambda's /var/task is read-only, so Python cannot cache the
# modules' bytecode there and would compile them at every cold start (45 ms: import app
# 0.47-0.48 against 0.42-0.45 s); compiled here instead, unchecked-hash so the files'
# times do not matter (pip compiled the libraries already).
RUN python -m compileall -q -l --invalidation-mode unchecked-hash "${LAMBDA_TASK_ROOT}"

CMD ["app.lambda_handler"]
