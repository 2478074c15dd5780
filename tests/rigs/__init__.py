"""Real file systems and services for tests: loop-mounted images, FUSE mounts, daemons."""
