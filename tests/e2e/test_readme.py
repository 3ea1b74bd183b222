"""Every curl in the README runs, in order, against a real server: a newcomer who pastes
them gets answers, not 401s, 404s or 422s. The README's own form configuration is the
server's; its key line is the only one replaced (the test's admin key for the local one)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api

pytestmark = [pytest.mark.e2e, pytest.mark.only_runtimes("embedded")]  # the examples show the embedded run

README = Path(__file__).resolve().parents[2] / "README.md"
STARTS = re.compile(r"^(curl |[A-Z_]+=\$\(curl )")


def commands(text: str) -> Iterator[str]:
    """The curl commands of the README's ``sh`` blocks, continuation lines joined, in order."""
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        current: list[str] = []
        for line in block.splitlines():
            if current:
                current.append(line)
            elif STARTS.match(line):
                current = [line]
            else:
                continue
            joined = "\n".join(current)
            if not joined.endswith("\\") and joined.count("'") % 2 == 0:
                yield joined
                current = []


def test_the_readme_has_curls_to_run() -> None:
    found = list(commands(README.read_text(encoding="utf-8")))
    assert len(found) >= 25 and all("$API" in c for c in found)


def test_every_readme_curl_answers_as_the_readme_says(start_runtime: Callable[..., Any], tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    forms = re.search(r"export TOUCHSTREAM_FORMS='(.*?)'", text, flags=re.S)
    assert forms is not None
    api = Api(start_runtime({"TOUCHSTREAM_FORMS": json.dumps(json.loads(forms.group(1)))}))
    found = list(commands(text))
    script = ["set -euo pipefail",
              # every answer's status goes to stderr after a marker naming the command
              "curl() { case \"$*\" in *'/stream'*) command curl --max-time 2 \"$@\" || [ $? -eq 28 ];; "
              "*) command curl --max-time 30 -w '%{stderr} HTTP %{http_code}\\n' \"$@\";; esac; }"]
    for n, command in enumerate(found):
        script += [f"echo '::command {n}' >&2", command]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "API": api.runtime.base_url, "KEY": api.runtime.keys.admin,
                               "H": f"Authorization: Bearer {api.runtime.keys.admin}"}, check=False)
    assert done.returncode == 0, (done.stderr[-2000:], done.stdout[-2000:])
    statuses: dict[int, list[int]] = {}
    command_no = -1
    for line in done.stderr.splitlines():
        if line.startswith("::command "):
            command_no = int(line.split()[1])
        elif (status := re.search(r" HTTP (\d{3})$", line)) is not None:
            statuses.setdefault(command_no, []).append(int(status.group(1)))
    wrong = {found[n]: codes for n, codes in statuses.items()
             if any(code >= 400 and not (code == 409 and "/v1/value/refit" in found[n]) for code in codes)}
    assert wrong == {}, wrong
    assert len(statuses) >= len(found) - 1  # every one answered (the event stream is cut, not answered)
    assert (tmp_path / "value-cards.csv").read_text().startswith("customer_id")
