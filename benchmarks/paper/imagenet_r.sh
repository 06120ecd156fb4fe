#!/usr/bin/env bash
# The paper's imagenet_r benchmark, every setting, then its table: imagenet_r.sh ROOT [calib-run overrides...]
exec "$(dirname "$0")/run.sh" imagenet_r "$@"
