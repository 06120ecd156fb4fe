#!/usr/bin/env bash
# The paper's imagenet_s benchmark, every setting, then its table: imagenet_s.sh ROOT [calib-run overrides...]
exec "$(dirname "$0")/run.sh" imagenet_s "$@"
