#!/usr/bin/env bash
# The paper's office_home benchmark, every setting, then its table: office_home.sh ROOT [calib-run overrides...]
exec "$(dirname "$0")/run.sh" office_home "$@"
