"""Customer segments in the shell: segment files and the ``touchstream segments`` commands."""
