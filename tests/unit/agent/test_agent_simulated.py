from __future__ import annotations

import pytest

from mcoflow.agent.providers import (
    PackageState,
    ProviderError,
    ServiceState,
    SimulatedFleet,
    SimulationSettings,
)
from mcoflow.testing import assert_eventually


async def test_each_identity_has_its_own_packages() -> None:
    fleet = SimulatedFleet(SimulationSettings(packages={"bash": "5.2"}))
    one, two = fleet.package_provider("sim-1"), fleet.package_provider("sim-2")
    await one.install("hello", None)
    assert (await one.status("hello")).state is PackageState.INSTALLED
    assert (await two.status("hello")).state is PackageState.ABSENT
    assert (await two.status("bash")).version == "5.2"
    assert (fleet.install_count("sim-1"), fleet.install_count("sim-2")) == (1, 0)


async def test_install_records_the_requested_version_and_uninstall_removes() -> None:
    fleet = SimulatedFleet()
    provider = fleet.package_provider("h")
    await provider.install("hello", "2.0")
    assert (await provider.status("hello")).version == "2.0"
    await provider.uninstall("hello")
    assert (await provider.status("hello")).state is PackageState.ABSENT
    assert fleet.calls[("h", "uninstall")] == 1


async def test_failure_rate_is_seeded_and_reproducible() -> None:
    async def outcomes(seed: int) -> list[bool]:
        fleet = SimulatedFleet(SimulationSettings(failure_rate=0.5, seed=seed))
        provider = fleet.package_provider("h")
        results = []
        for _ in range(40):
            try:
                await provider.install("hello", None)
                results.append(True)
            except ProviderError:
                results.append(False)
        return results

    first, again = await outcomes(3), await outcomes(3)
    assert first == again
    assert 5 < first.count(False) < 35


async def test_always_failing_fleet_counts_attempts_but_changes_nothing() -> None:
    fleet = SimulatedFleet(SimulationSettings(failure_rate=1.0))
    provider = fleet.package_provider("h")
    with pytest.raises(ProviderError, match="simulated failure"):
        await provider.install("hello", None)
    assert fleet.install_count("h") == 1
    assert (await provider.status("hello")).state is PackageState.ABSENT


async def test_services_start_stopped_unless_configured() -> None:
    fleet = SimulatedFleet(SimulationSettings(services={"cron": ServiceState.RUNNING}))
    services = fleet.service_provider("h")
    assert await services.status("cron") is ServiceState.RUNNING
    assert await services.status("nginx") is ServiceState.STOPPED
    await services.start("nginx")
    assert await services.status("nginx") is ServiceState.RUNNING
    with pytest.raises(ProviderError, match="invalid service"):
        await services.restart("bad name")


async def test_broken_package_fails_everywhere_or_on_the_named_host_only() -> None:
    fleet = SimulatedFleet(SimulationSettings(broken_packages=("vim", "curl@sim-2")))
    one, two = fleet.package_provider("sim-1"), fleet.package_provider("sim-2")
    for provider in (one, two, one):
        with pytest.raises(ProviderError, match="vim is broken"):
            await provider.install("vim", None)
    await one.install("curl", None)
    with pytest.raises(ProviderError, match="curl is broken"):
        await two.install("curl", None)
    assert (await one.status("curl")).state is PackageState.INSTALLED
    assert (await two.status("curl")).state is PackageState.ABSENT


async def test_flaky_package_fails_once_per_host_then_installs() -> None:
    fleet = SimulatedFleet(SimulationSettings(flaky_packages=("nginx", "jq@sim-2")))
    one, two = fleet.package_provider("sim-1"), fleet.package_provider("sim-2")
    for provider in (one, two):
        with pytest.raises(ProviderError, match="works the next time"):
            await provider.install("nginx", None)
        await provider.install("nginx", None)
        assert (await provider.status("nginx")).state is PackageState.INSTALLED
    await one.install("jq", None)
    with pytest.raises(ProviderError, match="download of jq failed"):
        await two.install("jq", None)
    await two.install("jq", None)


@pytest.mark.parametrize("rule", ["Bad", "vim@", "@sim-1", "vim@sim 1", ""])
def test_package_rules_are_checked(rule: str) -> None:
    with pytest.raises(ValueError, match="expected a package name"):
        SimulationSettings(broken_packages=(rule,))


async def test_broken_service_runs_for_one_look_after_a_start_then_is_stopped() -> None:
    fleet = SimulatedFleet(SimulationSettings(broken_services=("nginx@sim-2", "cron")))
    one, two = fleet.service_provider("sim-1"), fleet.service_provider("sim-2")
    await one.restart("nginx")
    for _ in range(3):
        assert await one.status("nginx") is ServiceState.RUNNING
    for service in (two.restart, two.start):
        await service("nginx")
        assert await two.status("nginx") is ServiceState.RUNNING  # the start's own look
        assert await two.status("nginx") is ServiceState.STOPPED
        assert await two.status("nginx") is ServiceState.STOPPED
    await one.start("cron")
    await one.stop("cron")  # stopped on purpose: no look sees it running
    assert await one.status("cron") is ServiceState.STOPPED


async def test_broken_service_runs_again_once_it_recovered() -> None:
    settings = SimulationSettings(broken_services=("nginx",), broken_services_recover_after=0.05)
    services = SimulatedFleet(settings).service_provider("sim-1")
    await services.restart("nginx")
    assert await services.status("nginx") is ServiceState.RUNNING
    assert await services.status("nginx") is ServiceState.STOPPED

    async def running() -> bool:
        return await services.status("nginx") is ServiceState.RUNNING

    await assert_eventually(running, timeout=5)
    assert await services.status("nginx") is ServiceState.RUNNING  # and stays up


@pytest.mark.parametrize("rule", ["", "nginx service", "-x"])
def test_service_rules_are_checked(rule: str) -> None:
    with pytest.raises(ValueError, match="expected a service name"):
        SimulationSettings(broken_services=(rule,))
