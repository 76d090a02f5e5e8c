"""Pure image math: alignment, pose, quality measures, templates. No file or network I/O."""
