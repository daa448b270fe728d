"""What operators watch: health checks (shared by `/healthz` and `digest doctor`)
and Prometheus metrics (`/metrics`, and a worker's or scheduler's --metrics-port)."""
