//! The container environment: my_init's /etc/container_environment import and export.
