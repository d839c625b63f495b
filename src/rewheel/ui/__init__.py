"""What people see: live progress, the browsable pages, the dependency graph."""
