#!/usr/bin/env python3
"""Ansible inventory script: the routers of the lab named by $MH_LAB (empty before create)."""
import json
import os
import sys

path = f"/tmp/mhlab-{os.environ.get('MH_LAB', 'mh')}/inventory/hosts.yml"
out = {"_meta": {"hostvars": {}}, "routers": {"hosts": []}}
if os.path.exists(path):
    with open(path, encoding="utf-8") as fh:
        hosts = json.load(fh)["all"]["children"]["routers"]["hosts"]
    out["routers"]["hosts"] = sorted(hosts)
    out["_meta"]["hostvars"] = hosts
if "--host" in sys.argv:
    print(json.dumps(out["_meta"]["hostvars"].get(sys.argv[-1], {})))
else:
    print(json.dumps(out))
