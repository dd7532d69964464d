"""What LSM passes to its event script and how the hook hands it to the monitor."""
