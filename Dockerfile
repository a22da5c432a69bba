# The Lambda image: AWS's Python base image (Amazon Linux 2023), the runtime requirements
# only (headless OpenCV: the GUI build needs libGL, which Lambda lacks), the service modules.
# One architecture per image (Lambda rejects manifest lists): build with
#   docker buildx build --platform linux/arm64 --provenance=false .   (or linux/amd64)
FROM public.ecr.aws/lambda/python:3.12

# Performance (memory): glibc gives each decoding thread a malloc arena of its own and
# raises its mmap threshold as frames come and go, so freed frame buffers end up scattered
# over heaps that never shrink. Two arenas, and buffers of 256 KiB or more always mapped
# (returned to the system when freed): peak RSS on a 60 s 1080x1920 reel 247 -> 222 MiB
# (FRAME_PICK=best), 257 -> 231 MiB (middle). glibc reads these once, at process start.
ENV MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=262144 MALLOC_TRIM_THRESHOLD_=1048576

COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --only-binary=:all: -r "${LAMBDA_TASK_ROOT}/requirements.txt"

COPY app.py config.py cpus.py extract.py decode.py detect.py transitions.py quality.py choose.py output.py ${LAMBDA_TASK_ROOT}/

CMD ["app.lambda_handler"]
