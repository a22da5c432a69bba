#!/usr/bin/env bash
# Build the Lambda image for one architecture, push it to ECR, and (optionally) point
# the function at it. Safe to run again: the repository is created only when missing.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./push_image.sh [options]

  --region REGION        AWS region            (env AWS_REGION, AWS_DEFAULT_REGION; default us-east-1)
  --repository NAME      ECR repository        (env ECR_REPOSITORY; default frame-extractor)
  --tag TAG              image tag             (env IMAGE_TAG; default: the short git commit)
  --platform PLATFORM    linux/arm64 or linux/amd64 (env PLATFORM; default linux/arm64)
  --function NAME        Lambda function to update to the new image (env FUNCTION_NAME; optional)
  --dry-run              print every command instead of running it; needs no AWS
                         credentials, network or Docker (account id from AWS_ACCOUNT_ID,
                         or a placeholder)
  -h, --help             this text

The ECR repository is created with scan on push and immutable tags, so a tag names
one image for good: push a new commit, or pass a new --tag.
EOF
}

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
REPOSITORY="${ECR_REPOSITORY:-frame-extractor}"
TAG="${IMAGE_TAG:-}"
PLATFORM="${PLATFORM:-linux/arm64}"
FUNCTION="${FUNCTION_NAME:-}"
DRY_RUN=0
PUSH_TIMEOUT="${PUSH_TIMEOUT:-900}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --region) REGION="${2:?--region needs a value}"; shift 2 ;;
    --repository) REPOSITORY="${2:?--repository needs a value}"; shift 2 ;;
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --platform) PLATFORM="${2:?--platform needs a value}"; shift 2 ;;
    --function) FUNCTION="${2:?--function needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "push_image.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$PLATFORM" in
  linux/arm64|linux/amd64) ;;
  *) echo "push_image.sh: --platform must be linux/arm64 or linux/amd64, got $PLATFORM" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"

if [[ -z "$TAG" ]]; then
  TAG="$(git rev-parse --short HEAD 2>/dev/null || true)"
  [[ -n "$TAG" ]] || { echo "push_image.sh: no git commit to tag with: pass --tag" >&2; exit 2; }
fi

# run CMD...: print it, and run it unless --dry-run.
run() {
  printf '+ %s\n' "$*"
  if [[ "$DRY_RUN" -eq 0 ]]; then
    "$@"
  fi
}

if [[ -n "${AWS_ACCOUNT_ID:-}" ]]; then
  ACCOUNT="$AWS_ACCOUNT_ID"
elif [[ "$DRY_RUN" -eq 1 ]]; then
  ACCOUNT="123456789012"
else
  ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
fi

REGISTRY="${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com"
IMAGE="${REGISTRY}/${REPOSITORY}:${TAG}"

echo "image: $IMAGE ($PLATFORM)"

# 1. The repository, only when missing.
if [[ "$DRY_RUN" -eq 1 ]]; then
  run aws ecr describe-repositories --region "$REGION" --repository-names "$REPOSITORY"
  run aws ecr create-repository --region "$REGION" --repository-name "$REPOSITORY" \
    --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE
elif aws ecr describe-repositories --region "$REGION" --repository-names "$REPOSITORY" >/dev/null 2>&1; then
  echo "repository $REPOSITORY exists"
else
  run aws ecr create-repository --region "$REGION" --repository-name "$REPOSITORY" \
    --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE --query repository.repositoryUri --output text
fi

# 2. Docker login to the registry.
printf '+ %s\n' "aws ecr get-login-password --region $REGION | docker login --username AWS --password-stdin $REGISTRY"
if [[ "$DRY_RUN" -eq 0 ]]; then
  aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY"
fi

# 3. Build one architecture, no attestation: Lambda rejects manifest lists.
run docker buildx build --platform "$PLATFORM" --provenance=false --load --tag "$IMAGE" .

# 4. Push, with a timeout and one retry.
if ! run timeout "$PUSH_TIMEOUT" docker push "$IMAGE"; then
  echo "push failed; retrying once" >&2
  sleep 5
  run timeout "$PUSH_TIMEOUT" docker push "$IMAGE"
fi

# 5. Point the function at the new image and wait. Lambda resolves a tag to a digest
#    when the code is updated: pushing the same tag again would not change the function.
if [[ -n "$FUNCTION" ]]; then
  run aws lambda update-function-code --region "$REGION" --function-name "$FUNCTION" --image-uri "$IMAGE" --query LastUpdateStatus --output text
  run aws lambda wait function-updated --region "$REGION" --function-name "$FUNCTION"
  echo "function $FUNCTION now runs $IMAGE"
fi
