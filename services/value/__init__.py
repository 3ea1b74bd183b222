"""Customer value models that need numpy and scipy: the BG/NBD purchase model and its inputs."""
