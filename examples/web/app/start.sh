#!/bin/sh
# Writes a page naming the version and the host (the pod) that served it, then serves it.
mkdir -p /www
echo "web ${WEB_VERSION} on $(hostname)" > /www/index.html
httpd -f -p "${PORT}" -h /www &
pid=$!
# PID 1 gets no default signal handlers: exit promptly on TERM so stops are graceful.
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
