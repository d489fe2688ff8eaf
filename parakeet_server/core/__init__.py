"""Code every service shares, each concept once: errors, call context, server bootstrap, RunPod shim."""
