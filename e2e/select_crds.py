"""Keep, from a YAML stream of CRDs on stdin, those of the API groups named as arguments; write them to stdout.

`helm show crds` of Envoy Gateway also carries Gateway API CRDs, which e2e installs from their own pinned release.
"""

from __future__ import annotations

import sys

from ruamel.yaml import YAML


def main(groups: list[str]) -> int:
    yaml = YAML(typ="safe")
    wanted = [doc for doc in yaml.load_all(sys.stdin) if doc and doc.get("spec", {}).get("group") in groups]
    if not wanted:
        print(f"select_crds: no CRD of {groups} on stdin", file=sys.stderr)
        return 1
    yaml.dump_all(wanted, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
