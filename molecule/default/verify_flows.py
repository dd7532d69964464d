import collections
import sys

sys.path.insert(0, "tests")
from harness import Lab  # noqa: E402

lab = Lab(sys.argv[1])
lab.up()
seen = collections.Counter(lab.flows("c1", 20))
expected = {lab.uplink_address("isp1"), lab.uplink_address("isp2")}
print(dict(seen))
sys.exit(0 if set(seen) == expected and min(seen.values()) >= 5 else 1)
