"""netops.multihome engine: model, validation, kernel state, planning and atomic apply.

Standard library only; runs under Ansible modules (as module_utils) and on the router,
where the role installs this package as-is beside the router runtime (``router/``).
Modules inside the package import each other relatively so both uses work.

  model/    validation vocabulary, the role's model, the modules' typed params
  routing/  routing tables, policy rules, rt_tables names, sysctl, the main default
  ruleset/  new-flow choice, the backend-neutral ruleset plan, nft and iptables backends
  failover/ uplink state files and the reaction to one monitor event
  hook/     LSM's event arguments and the hook <-> monitor wire protocol
"""
