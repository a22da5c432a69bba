# The Lambda image: AWS's Python base image (Amazon Linux 2023), the runtime requirements
# only (headless OpenCV: the GUI build needs libGL, which Lambda lacks), the service modules.
# One architecture per image (Lambda rejects manifest lists): build with
#   docker buildx build --platform linux/arm64 --provenance=false .   (or linux/amd64)
FROM public.ecr.aws/lambda/python:3.12

COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --only-binary=:all: -r "${LAMBDA_TASK_ROOT}/requirements.txt"

COPY app.py config.py extract.py decode.py detect.py transitions.py quality.py choose.py output.py ${LAMBDA_TASK_ROOT}/

CMD ["app.lambda_handler"]
