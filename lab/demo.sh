#!/usr/bin/env bash
# `make demo`: bring the lab up and configure r1 with site.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 lab/mhlab.py up
ansible-playbook -i /tmp/mhlab-mh/inventory playbooks/site.yml
