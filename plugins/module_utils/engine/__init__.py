"""netops.multihome engine: model, validation, kernel state, planning and atomic apply.

Standard library only; runs under Ansible modules (as module_utils) and on the router
(failover hook, ``multihome`` CLI) where the role installs this package as-is.
Modules inside the package import each other relatively so both uses work.
"""
