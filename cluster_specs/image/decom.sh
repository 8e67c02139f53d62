#!/usr/bin/env bash
# Spark's executor preStop hook (spark.kubernetes.executor.decommissionScript): ask the
# executor JVM to decommission (SIGPWR), moving its shuffle and cached blocks to other
# executors, and wait for it to exit within the pod's grace period.
set -eu
pid=$(pgrep -o java || true)
if [ -z "${pid}" ]; then
  exit 0
fi
echo "decommissioning executor (pid ${pid})"
kill -s PWR "${pid}"
tail --pid="${pid}" -f /dev/null
