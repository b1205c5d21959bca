"""`mcoflow templates list|show` and `mcoflow run`'s input errors through the real CLI
(a process per command). Running a template on hosts is
tests/acceptance/web/test_template_rollout.py's, on a real `mcoflow serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MCOFLOW = Path(sys.executable).with_name("mcoflow")
ROLLING = "rolling-package-update"


def mcoflow(cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(MCOFLOW), *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_list_and_show(tmp_path: Path) -> None:
    code, out, err = mcoflow(tmp_path, "templates", "list")
    assert code == 0, out + err
    assert ROLLING in out and "package*, service*" in out
    code, out, err = mcoflow(tmp_path, "templates", "list", "--json")
    assert code == 0, err
    names = [t["name"] for t in json.loads(out)]
    assert ROLLING in names and "install-and-restart" in names
    code, out, err = mcoflow(tmp_path, "templates", "show", ROLLING, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["inputs"]["required"] == ["package", "service"]
    assert shown["defaults"] == {"batch_size": "10%", "max_failures": "1"}
    code, out, _ = mcoflow(tmp_path, "templates", "show", ROLLING)
    assert code == 0
    assert "fleet defaults: batch_size 10%, max_failures 1" in out
    assert f"mcoflow run {ROLLING} --input package=… --input service=… HOSTS" in out


def test_unknown_template_names_the_known_ones(tmp_path: Path) -> None:
    for args in (("templates", "show", "rolling"), ("run", "rolling", "h1", "-i", "a=b")):
        code, out, _ = mcoflow(tmp_path, *args)
        assert code == 2, out
        assert "error: TEMPLATE: no template named 'rolling'" in out
        assert "rolling-package-update" in out  # among the known ones


def test_run_names_the_input_at_fault(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'mcoflow.db'}"]
    wrong = {
        ("-i", "package"): "error: --input: expected NAME=VALUE, got 'package'",
        ("-i", "packge=curl", "-i", "service=nginx"): "error: --input packge: not an input",
        ("-i", "service=nginx"): "error: --input package: is required",
        ("-i", "package=bad name", "-i", "service=nginx"): "error: --input package: 'bad name'",
    }
    for inputs, said in wrong.items():
        code, out, err = mcoflow(tmp_path, "run", ROLLING, "sim-00001", *inputs, *db)
        assert code == 2, out + err
        assert said in out, out


def test_a_refused_template_file_is_named_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "name: mine\ndescription: x\nsteps:\n  - name: a\n    agent: package\n    action: nope\n"
    )
    code, out, err = mcoflow(tmp_path, "templates", "list", MCOFLOW_TEMPLATES_DIR=str(folder))
    assert code == 1, out + err
    assert ROLLING in out  # the others still load
    assert f"refused: {folder / 'mine.yaml'}:6: steps[0].action:" in err, err
