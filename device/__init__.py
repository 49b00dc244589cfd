"""The device: claims queued requests and runs them on a pool of pre-forked kernels."""
