"""arm64 tests under qemu-user."""
