"""OS providers with a recording command runner: the exact argv, and how output is read."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcoflow.agent.command import CommandResult
from mcoflow.agent.providers import (
    PackageChoice,
    PackageState,
    ProviderError,
    ServiceChoice,
    ServiceState,
    detect_package_provider,
    detect_service_provider,
)
from mcoflow.agent.providers.apt import AptProvider, parse_dpkg_status
from mcoflow.agent.providers.dnf import DnfProvider
from mcoflow.agent.providers.systemd import SystemdProvider
from mcoflow.agent.providers.sysv import SysVProvider


@dataclass
class FakeRunner:
    results: list[CommandResult] = field(default_factory=list)
    calls: list[tuple[tuple[str, ...], dict[str, str] | None]] = field(default_factory=list)

    def reply(self, returncode: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.results.append(CommandResult((), returncode, stdout, stderr))

    async def __call__(
        self, argv: Sequence[str], time_limit: float, env: Mapping[str, str] | None
    ) -> CommandResult:
        assert time_limit > 0
        self.calls.append((tuple(argv), dict(env) if env is not None else None))
        return self.results.pop(0) if self.results else CommandResult(tuple(argv), 0, "", "")


async def test_apt_status_reads_dpkg_query() -> None:
    runner = FakeRunner()
    runner.reply(stdout="ii \t2.10-3\tamd64\n")
    status = await AptProvider(runner=runner).status("hello")
    assert (status.state, status.version, status.arch) == (
        PackageState.INSTALLED,
        "2.10-3",
        "amd64",
    )
    argv = runner.calls[0][0]
    assert argv[0] == "dpkg-query"
    assert argv[-2:] == ("--", "hello")


async def test_apt_status_of_unknown_package_is_absent() -> None:
    runner = FakeRunner()
    runner.reply(1, stderr="dpkg-query: no packages found matching nope\n")
    assert (await AptProvider(runner=runner).status("nope")).state is PackageState.ABSENT


def test_dpkg_status_lines() -> None:
    assert parse_dpkg_status("x", "rc \t\tamd64\n").state is PackageState.CONFIG_FILES
    assert parse_dpkg_status("x", "un \t\t\n").state is PackageState.ABSENT
    both = parse_dpkg_status("x", "un \t\ti386\nii \t1.0\tamd64\n")
    assert (both.state, both.version) == (PackageState.INSTALLED, "1.0")


async def test_apt_install_is_noninteractive_argv_with_version() -> None:
    runner = FakeRunner()
    await AptProvider(runner=runner, check_root=False).install("hello", "2.10-3")
    argv, env = runner.calls[0]
    assert argv[0] == "apt-get"
    assert "-y" in argv
    assert argv[-4:] == ("install", "--allow-downgrades", "--", "hello=2.10-3")
    assert env is not None
    assert env["DEBIAN_FRONTEND"] == "noninteractive"


async def test_apt_failure_carries_the_output() -> None:
    runner = FakeRunner()
    runner.reply(100, stderr="E: Unable to locate package nope\n")
    with pytest.raises(ProviderError) as caught:
        await AptProvider(runner=runner, check_root=False).install("nope", None)
    assert "exit 100" in str(caught.value)
    assert "Unable to locate package" in caught.value.output


async def test_needs_root_message_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runner = FakeRunner()
    with pytest.raises(ProviderError, match="needs root"):
        await AptProvider(runner=runner).install("hello", None)
    with pytest.raises(ProviderError, match="needs root"):
        await DnfProvider("dnf", runner=runner).purge("hello")
    assert runner.calls == []


@pytest.mark.parametrize(
    ("name", "version"), [("-oAPT::x", None), ("hello", "--force"), ("a b", None)]
)
async def test_invalid_names_never_reach_a_command(name: str, version: str | None) -> None:
    runner = FakeRunner()
    with pytest.raises(ProviderError, match="invalid package"):
        await AptProvider(runner=runner, check_root=False).install(name, version)
    assert runner.calls == []


async def test_dnf_and_yum_argv() -> None:
    runner = FakeRunner()
    runner.reply(stdout="0:2.10-3.fc40\tx86_64\n")
    status = await DnfProvider("dnf", runner=runner).status("hello")
    assert (status.version, status.arch) == ("2.10-3.fc40", "x86_64")
    await DnfProvider("yum", runner=runner, check_root=False).install("hello", "2.10")
    assert runner.calls[1][0] == ("yum", "-y", "-q", "install", "--", "hello-2.10")
    runner.reply(1, stdout="package hello is not installed\n")
    assert (await DnfProvider(runner=runner).status("hello")).state is PackageState.ABSENT


async def test_sysv_uses_service_command_and_lsb_status(tmp_path: Path) -> None:
    (tmp_path / "cron").write_text("#!/bin/sh\n")
    runner = FakeRunner()
    provider = SysVProvider(
        init_dir=tmp_path, runner=runner, check_root=False, use_service_command=True
    )
    runner.reply(3)
    assert await provider.status("cron") is ServiceState.STOPPED
    runner.reply(0)
    assert await provider.status("cron") is ServiceState.RUNNING
    await provider.restart("cron")
    assert runner.calls[-1][0] == ("service", "cron", "restart")
    direct = SysVProvider(
        init_dir=tmp_path, runner=runner, check_root=False, use_service_command=False
    )
    await direct.start("cron")
    assert runner.calls[-1][0] == (str(tmp_path / "cron"), "start")


async def test_sysv_unknown_service_is_a_clear_error(tmp_path: Path) -> None:
    runner = FakeRunner()
    with pytest.raises(ProviderError, match="unknown service nope"):
        await SysVProvider(init_dir=tmp_path, runner=runner).restart("nope")
    assert runner.calls == []


async def test_systemd_argv() -> None:
    runner = FakeRunner()
    provider = SystemdProvider(runner=runner, check_root=False)
    runner.reply(3)
    assert await provider.status("nginx") is ServiceState.STOPPED
    runner.reply(1, stderr="Unit nginx.service not found.")
    with pytest.raises(ProviderError) as caught:
        await provider.start("nginx")
    assert runner.calls[-1][0] == ("systemctl", "--no-ask-password", "start", "--", "nginx")
    assert "not found" in caught.value.output


def test_detection_follows_the_os(tmp_path: Path) -> None:
    debian = {"dpkg-query": "/usr/bin/dpkg-query", "apt-get": "/usr/bin/apt-get"}
    fedora = {"rpm": "/usr/bin/rpm", "dnf": "/usr/bin/dnf"}
    assert isinstance(detect_package_provider(which=debian.get), AptProvider)
    found = detect_package_provider(which=fedora.get)
    assert isinstance(found, DnfProvider)
    assert found.name == "dnf"
    assert detect_package_provider(which={}.get) is None
    assert detect_package_provider(PackageChoice.NONE) is None
    with pytest.raises(ValueError, match="simulated"):
        detect_package_provider(PackageChoice.SIMULATED)

    comm = tmp_path / "comm"
    comm.write_text("systemd\n")
    systemctl = {"systemctl": "/bin/systemctl"}.get
    assert isinstance(detect_service_provider(which=systemctl, pid1_comm=comm), SystemdProvider)
    comm.write_text("tini\n")
    sysv = detect_service_provider(which=systemctl, pid1_comm=comm, init_dir=tmp_path)
    assert isinstance(sysv, SysVProvider)
    assert detect_service_provider(ServiceChoice.NONE) is None
    gone = tmp_path / "missing"
    assert detect_service_provider(which=systemctl, pid1_comm=comm, init_dir=gone) is None
