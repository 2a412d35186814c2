"""The ops console: the admin listener's pages at ``/`` (sign-in, every migration at a
glance, one migration's page with its actions) and their live updates (server-sent
events). Served with the admin API, by the same process; no script from anywhere else."""
