"""The README's configuration reference names every key of the shipped
config (configs/phase4.toml, every key commented): a key added to the code
and the shipped file but not to the table is caught here."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def leaves(table, path=()):
    for k, v in table.items():
        if isinstance(v, dict):
            yield from leaves(v, path + (k,))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                yield from leaves(item, path + (k,))
        else:
            yield path + (k,)


def test_every_shipped_key_is_in_the_readme_table():
    shipped = tomllib.loads((ROOT / "configs/phase4.toml").read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `\[([a-z]+)\]` \|.*$", section, re.M)}
    keys = sorted(set(leaves(shipped)))
    assert len(keys) > 100, keys
    missing = []
    for key in keys:
        row = rows.get(key[0], "")
        if f"`{key[-1]}`" not in row:
            missing.append(".".join(key))
        for sub in key[1:-1]:
            # A sub-table is named in its section's row too ([dsp.low], ...).
            if f"{key[0]}.{sub}" not in row:
                missing.append(".".join(key[:-1]) + " (table)")
    assert not missing, f"not in the README's configuration reference: {sorted(set(missing))}"
