#!/usr/bin/env bash
# The paper's vtab benchmark, every setting, then its table: vtab.sh ROOT [calib-run overrides...]
exec "$(dirname "$0")/run.sh" vtab "$@"
