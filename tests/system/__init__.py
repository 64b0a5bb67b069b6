"""Real-target tests: a booted systemd container deployed by Ansible."""
