"""The balancing ruleset: new-flow choice, a backend-neutral plan, nftables and iptables."""
