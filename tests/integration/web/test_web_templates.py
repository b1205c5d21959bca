"""Job templates in the console and the REST API (the app in-process, the shipped
templates and a folder of one's own): listing with inputs as JSON Schema, the trigger
page's template form, and the errors that name their field. Running them on hosts is
tests/acceptance/web/test_template_rollout.py's (a real `mcoflow serve`)."""

from __future__ import annotations

from pathlib import Path

from web_client import Web

from mcoflow.templates import load_library

ROLLING = "rolling-package-update"


async def test_api_lists_templates_with_their_inputs_as_json_schema(web: Web) -> None:
    r = await web.client.get("/api/v1/templates")
    assert r.status_code == 200, r.text
    listed = r.json()
    names = [t["name"] for t in listed["templates"]]
    assert names == sorted(names) and ROLLING in names and "install-and-restart" in names
    assert listed["refused"] == []
    shown = await web.client.get(f"/api/v1/templates/{ROLLING}")
    assert shown.status_code == 200
    rolling = shown.json()
    assert rolling == next(t for t in listed["templates"] if t["name"] == ROLLING)
    schema = rolling["inputs"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["package", "service"]
    assert schema["properties"]["package"]["type"] == "string"
    assert rolling["defaults"] == {"batch_size": "10%", "max_failures": "1"}
    assert rolling["source"] == f"mcoflow:{ROLLING}.yaml"


async def test_api_unknown_template_and_misspelled_fields(web: Web) -> None:
    missing = await web.client.get("/api/v1/templates/rolling")
    assert missing.status_code == 404
    assert "rolling" in missing.json()["detail"]
    body = {"hosts": ["web-01"], "inputs": {"package": "curl", "service": "nginx"}}
    r = await web.client.post("/api/v1/templates/rolling/run", json=body)
    assert r.status_code == 404, r.text
    r = await web.client.post(f"/api/v1/templates/{ROLLING}/run", json=body | {"batch": "5"})
    assert r.status_code == 422 and r.json()["field"] == "batch", r.text
    assert web.jobs.triggered == []  # nothing was started


async def test_trigger_page_renders_the_chosen_templates_inputs(web: Web) -> None:
    page = await web.client.get("/")
    assert page.status_code == 200
    assert f'<option value="{ROLLING}" >' in page.text  # offered, none chosen yet
    assert 'name="input.package"' not in page.text
    chosen = await web.client.get("/", params={"template": ROLLING})
    assert chosen.status_code == 200
    for field in ("input.package", "input.service", "hosts", "batch_size", "max_failures"):
        assert f'name="{field}"' in chosen.text, field
    assert f"Inputs of {ROLLING}" in chosen.text
    assert 'placeholder="10% (the template\'s)"' in chosen.text  # its batch default
    unknown = await web.client.get("/", params={"template": "nope"})
    assert unknown.status_code == 200 and "no template &#39;nope&#39;" in unknown.text


async def test_template_form_refuses_what_it_does_not_take(web: Web) -> None:
    token = await web.csrf(f"/?template={ROLLING}")
    form = {
        "csrf_token": token,
        "template": ROLLING,
        "target": "hosts",
        "hosts": "web-01",
        "input.package": "curl",
        "input.service": "nginx",
    }
    r = await web.client.post("/templates/run", data=form | {"input.servce": "x"})
    assert r.status_code == 422 and "input.servce" in r.text
    r = await web.client.post("/templates/run", data=form | {"csrf_token": "forged"})
    assert r.status_code == 403
    r = await web.client.post("/templates/run", data=form | {"template": "nope"})
    assert r.status_code == 422 and "choose a template" in r.text
    assert web.jobs.triggered == []


async def test_refused_template_files_are_shown_with_file_line_and_field(
    web: Web, tmp_path: Path
) -> None:
    (tmp_path / "broken.yaml").write_text(
        "name: broken\ndescription: x\nsteps:\n  - name: a\n    agent: nosuch\n    action: b\n"
    )
    web.transport.app.state.template_library = load_library(tmp_path)  # type: ignore[attr-defined]
    (refused,) = (await web.client.get("/api/v1/templates")).json()["refused"]
    assert refused["file"] == str(tmp_path / "broken.yaml")
    assert refused["line"] == 5 and refused["field"].endswith("agent"), refused
    page = await web.client.get("/")
    assert f"Template file refused: {tmp_path / 'broken.yaml'}:5:" in page.text
