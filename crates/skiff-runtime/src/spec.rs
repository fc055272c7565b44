//! Translation of a [`ContainerSpec`] into an OCI runtime spec (bundle `config.json`),
//! with docker/containerd-like defaults: namespaces, default capabilities, /proc and /sys
//! masking, a minimal /dev, rlimits, resource limits and a deny-list seccomp profile.

use std::path::Path;

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder,
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder,
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use crate::{ContainerSpec, NetworkMode, Result, RuntimeError};

/// Used when the image sets no PATH (libcontainer refuses to start without one).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability oci-spec knows, in kernel order (index = capability number).
pub const ALL_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Our own capability bounding set: a container cannot get more (capset fails with EPERM),
/// which matters when skiff itself runs in a restricted container.
pub fn bounding_caps() -> Capabilities {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// containerd's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// On cgroup v1 libcontainer bind-mounts each hierarchy into /sys/fs/cgroup read-write,
/// ignoring the mount's "ro": container root could raise its own limits. Re-mounting each
/// hierarchy read-only through readonly_paths closes that (missing paths are skipped).
pub fn cgroup_v1_readonly_paths() -> Vec<String> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return Vec::new(); // unified: mounted as cgroup2 with our "ro"
    }
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    std::iter::once("/sys/fs/cgroup".to_string())
        .chain(names.into_iter().map(|n| format!("/sys/fs/cgroup/{n}")))
        .collect()
}

/// Syscalls denied with EPERM by the default seccomp profile: kernel/module/clock/keyring
/// manipulation, namespace and mount escapes, tracing and other processes' memory.
pub const SECCOMP_DENY: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "lookup_dcookie",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "move_mount",
    "fsopen",
    "fsmount",
    "fspick",
    "open_tree",
    "name_to_handle_at",
    "quotactl",
    "nfsservctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "uselib",
    "vm86",
    "vm86old",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
];

const CFS_PERIOD: u64 = 100_000;

/// containerd's RLIMIT_NOFILE for containers.
pub const NOFILE: u64 = 1_048_576;

/// [`NOFILE`], or our own hard limit when we may not raise it (no CAP_SYS_RESOURCE, e.g.
/// when skiff itself runs in a restricted container): libcontainer fails with EPERM else.
pub fn nofile_limit() -> u64 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let has_cap = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0);
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) if !has_cap && hard < NOFILE => hard,
        _ => NOFILE,
    }
}

fn oci_err(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::Other(format!("building OCI spec: {e}"))
}

/// Parses "NET_ADMIN", "net_admin" or "CAP_NET_ADMIN".
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| RuntimeError::InvalidSpec(format!("unknown capability {name:?}")))
}

/// The capability set of the container process: docker's defaults + cap_add - cap_drop,
/// everything when privileged. "ALL" is accepted in both lists.
pub fn capability_set(spec: &ContainerSpec) -> Result<Capabilities> {
    if spec.privileged {
        return Ok(ALL_CAPS.iter().copied().collect());
    }
    let mut caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
    for name in &spec.cap_add {
        if name.eq_ignore_ascii_case("ALL") {
            caps.extend(ALL_CAPS.iter().copied());
        } else {
            caps.insert(parse_capability(name)?);
        }
    }
    for name in &spec.cap_drop {
        if name.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            caps.remove(&parse_capability(name)?);
        }
    }
    Ok(caps)
}

fn linux_capabilities(caps: Capabilities) -> Result<LinuxCapabilities> {
    let mut c = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(oci_err)?;
    // The builder fills these with defaults; inheritable/ambient caps would survive exec
    // into non-root processes, which docker does not allow.
    c.set_inheritable(None);
    c.set_ambient(None);
    Ok(c)
}

/// FNV-1a: a stable, dependency-free hash to name the per-data-dir cgroup parent.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The parent cgroup (relative to each hierarchy root) of all containers of one data dir,
/// so two data dirs (tests, several nodes on one host) never share cgroups.
pub fn cgroup_parent(data_dir: &Path) -> String {
    let h = fnv1a(data_dir.as_os_str().as_encoded_bytes());
    format!("/skiff-{:08x}", h as u32)
}

pub fn cgroups_path(data_dir: &Path, id: &str) -> String {
    format!("{}/{id}", cgroup_parent(data_dir))
}

/// The cgroup of container `id`: below its pod cgroup when it has one.
pub fn container_cgroups_path(data_dir: &Path, spec: &ContainerSpec, id: &str) -> String {
    match &spec.pod_cgroup {
        Some(pc) => format!("{}/{}/{id}", cgroup_parent(data_dir), pc.name),
        None => cgroups_path(data_dir, id),
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(oci_err)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    let b = match path {
        Some(p) => b.path(p),
        None => b,
    };
    b.build().map_err(oci_err)
}

/// Points the IPC/UTS namespaces of `oci` at existing ones (pod sandboxes), or leaves the PID
/// and IPC namespaces out so the container stays in the host's (the shim's, i.e. the agent's).
pub fn join_namespaces(oci: &mut Spec, join: &crate::JoinNamespaces) -> Result<()> {
    let Some(linux) = oci.linux().clone() else {
        return Ok(());
    };
    let mut linux = linux;
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let ipc = if join.host_ipc { &None } else { &join.ipc };
    for (typ, path) in [
        (LinuxNamespaceType::Ipc, ipc),
        (LinuxNamespaceType::Uts, &join.uts),
    ] {
        if let Some(p) = path {
            namespaces.retain(|n| n.typ() != typ);
            namespaces.push(namespace(typ, Some(p))?);
        }
    }
    if join.host_pid {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Pid);
    } else if let Some(p) = &join.pid {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Pid);
        namespaces.push(namespace(LinuxNamespaceType::Pid, Some(p))?);
    }
    if join.host_ipc {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Ipc);
    }
    linux.set_namespaces(Some(namespaces));
    oci.set_linux(Some(linux));
    Ok(())
}

/// Denied unless the container holds CAP_SYS_PTRACE (docker's profile allows them then, and
/// `kubectl debug --profile=general` adds it to trace the target's processes).
const PTRACE_CALLS: &[&str] = &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"];

/// The deny-list seccomp profile (default allow, EPERM for [`SECCOMP_DENY`]).
pub fn default_seccomp() -> Result<LinuxSeccomp> {
    seccomp_profile(false)
}

/// [`default_seccomp`], with the tracing calls allowed when `sys_ptrace` (the container
/// holds CAP_SYS_PTRACE).
pub fn seccomp_profile(sys_ptrace: bool) -> Result<LinuxSeccomp> {
    let deny = LinuxSyscallBuilder::default()
        .names(
            SECCOMP_DENY
                .iter()
                .filter(|s| !(sys_ptrace && PTRACE_CALLS.contains(s)))
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(libc_eperm())
        .build()
        .map_err(oci_err)?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchNative])
        .syscalls(vec![deny])
        .build()
        .map_err(oci_err)
}

fn libc_eperm() -> u32 {
    nix::errno::Errno::EPERM as u32
}

/// Environment with a PATH guaranteed (docker adds one when the image has none).
pub fn env_with_path(env: &[String]) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

/// Builds the OCI runtime spec for container `id` whose rootfs is mounted at `rootfs`.
pub fn build_oci_spec(
    spec: &ContainerSpec,
    id: &str,
    rootfs: &Path,
    cgroups_path: &str,
) -> Result<Spec> {
    if spec.args.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command given".into()));
    }
    let cwd = if spec.cwd.is_empty() {
        "/".to_string()
    } else if spec.cwd.starts_with('/') {
        spec.cwd.clone()
    } else {
        return Err(RuntimeError::InvalidSpec(format!(
            "working directory {:?} is not absolute",
            spec.cwd
        )));
    };

    let mut user = UserBuilder::default().uid(spec.uid).gid(spec.gid);
    if !spec.additional_gids.is_empty() {
        user = user.additional_gids(spec.additional_gids.clone());
    }
    let user = user.build().map_err(oci_err)?;

    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(nofile_limit())
        .soft(nofile_limit())
        .build()
        .map_err(oci_err)?;

    let process = ProcessBuilder::default()
        .terminal(spec.tty)
        .args(spec.args.clone())
        .env(env_with_path(&spec.env))
        .cwd(cwd)
        .user(user)
        .no_new_privileges(!spec.privileged)
        .capabilities(linux_capabilities(
            capability_set(spec)?
                .intersection(&bounding_caps())
                .copied()
                .collect(),
        )?)
        .rlimits(vec![nofile])
        .build()
        .map_err(oci_err)?;

    let root = RootBuilder::default()
        .path(rootfs)
        .readonly(spec.readonly_rootfs)
        .build()
        .map_err(oci_err)?;

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    let sys_ro = if spec.privileged { "rw" } else { "ro" };
    // A fresh sysfs also with the host's network namespace: an rbind of the host's /sys
    // would carry writable submounts (debugfs, bpf, the host's cgroups) into the container.
    mounts.push(mount(
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", sys_ro],
    )?);
    mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", sys_ro],
    )?);
    for m in &spec.mounts {
        if !m.destination.starts_with('/') {
            return Err(RuntimeError::InvalidSpec(format!(
                "mount destination {:?} is not absolute",
                m.destination
            )));
        }
        let mut opts = vec!["rbind", "rprivate"];
        if m.readonly {
            opts.push("ro");
        }
        let src = m.source.to_string_lossy();
        mounts.push(mount(&m.destination, "bind", &src, &opts)?);
    }

    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Ipc, None)?,
    ];
    match &spec.network {
        NetworkMode::None => namespaces.push(namespace(LinuxNamespaceType::Network, None)?),
        NetworkMode::Host => {}
        NetworkMode::Path(p) => namespaces.push(namespace(LinuxNamespaceType::Network, Some(p))?),
    }

    let mut resources = LinuxResourcesBuilder::default();
    // Deny every device, then libcontainer allows its default set (null, zero, tty, ...).
    let devices = LinuxDeviceCgroupBuilder::default()
        .allow(spec.privileged)
        .access("rwm")
        .build()
        .map_err(oci_err)?;
    resources = resources.devices(vec![devices]);
    if let Some(mem) = spec.memory {
        if mem <= 0 {
            return Err(RuntimeError::InvalidSpec(format!(
                "memory limit {mem} must be > 0"
            )));
        }
        // swap = limit: the container gets OOM-killed instead of swapping.
        let m = LinuxMemoryBuilder::default()
            .limit(mem)
            .swap(mem)
            .build()
            .map_err(oci_err)?;
        resources = resources.memory(m);
    }
    if spec.cpus.is_some() || spec.cpu_shares.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(cpus) = spec.cpus {
            if !(cpus > 0.0 && cpus.is_finite()) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "cpus {cpus} must be > 0"
                )));
            }
            let quota = (cpus * CFS_PERIOD as f64).round() as i64;
            // The kernel refuses quotas below 1ms.
            cpu = cpu.quota(quota.max(1000)).period(CFS_PERIOD);
        }
        if let Some(shares) = spec.cpu_shares {
            cpu = cpu.shares(shares);
        }
        resources = resources.cpu(cpu.build().map_err(oci_err)?);
    }
    if let Some(pids) = spec.pids_limit {
        if pids > 0 {
            resources = resources.pids(
                LinuxPidsBuilder::default()
                    .limit(pids)
                    .build()
                    .map_err(oci_err)?,
            );
        }
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(cgroups_path)
        .resources(resources.build().map_err(oci_err)?);
    if spec.privileged {
        // LinuxBuilder's defaults would mask paths; privileged containers see everything.
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .chain(cgroup_v1_readonly_paths())
                    .collect::<Vec<_>>(),
            )
            // Privileged containers get no seccomp profile: they may load modules, mount,
            // trace etc. anyway, like docker's --privileged (seccomp=unconfined).
            .seccomp(seccomp_profile(
                capability_set(spec)?.contains(&Capability::SysPtrace)
                    && bounding_caps().contains(&Capability::SysPtrace),
            )?);
    }
    let linux = linux.build().map_err(oci_err)?;

    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());

    SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .process(process)
        .hostname(hostname)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(oci_err)
}

/// Names of capabilities in a set (sorted), for tests and diagnostics.
pub fn cap_names(caps: &Capabilities) -> Vec<String> {
    let mut v: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BindMount;
    use std::path::PathBuf;

    pub(crate) fn base_spec() -> ContainerSpec {
        ContainerSpec {
            image: "bb:1".into(),
            image_id: "sha256:x".into(),
            args: vec!["sh".into()],
            env: vec!["A=B".into()],
            ..Default::default()
        }
    }

    fn build(s: &ContainerSpec) -> Spec {
        build_oci_spec(s, &"a".repeat(64), Path::new("/x/rootfs"), "/skiff-1/abc").unwrap()
    }

    fn ns_types(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    #[test]
    fn namespaces_per_network_mode() {
        let mut s = base_spec();
        let ns = ns_types(&build(&s));
        assert!(ns.contains(&(LinuxNamespaceType::Network, None)));
        for t in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
        ] {
            assert!(ns.contains(&(t, None)), "{t:?}");
        }
        s.network = NetworkMode::Host;
        let spec = build(&s);
        let ns = ns_types(&spec);
        assert!(!ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Network));
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("sysfs"));
        s.network = NetworkMode::Path("/var/run/netns/x".into());
        let ns = ns_types(&build(&s));
        assert!(ns.contains(&(
            LinuxNamespaceType::Network,
            Some(PathBuf::from("/var/run/netns/x"))
        )));
    }

    #[test]
    fn host_pid_and_ipc_leave_namespaces_out() {
        let join = crate::JoinNamespaces {
            ipc: Some("/run/sb/ipc".into()),
            uts: Some("/run/sb/uts".into()),
            ..Default::default()
        };
        let mut spec = build(&base_spec());
        join_namespaces(&mut spec, &join).unwrap();
        let ns = ns_types(&spec);
        assert!(ns.contains(&(LinuxNamespaceType::Pid, None)));
        assert!(ns.contains(&(LinuxNamespaceType::Ipc, Some("/run/sb/ipc".into()))));
        let mut spec = build(&base_spec());
        let host = crate::JoinNamespaces {
            host_pid: true,
            host_ipc: true,
            ..join
        };
        join_namespaces(&mut spec, &host).unwrap();
        let ns = ns_types(&spec);
        assert!(
            !ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Pid),
            "{ns:?}"
        );
        assert!(
            !ns.iter().any(|(t, _)| *t == LinuxNamespaceType::Ipc),
            "{ns:?}"
        );
        assert!(ns.contains(&(LinuxNamespaceType::Uts, Some("/run/sb/uts".into()))));
        assert!(ns.contains(&(LinuxNamespaceType::Mount, None)));
        // An ephemeral container joins its target's PID namespace.
        let mut spec = build(&base_spec());
        let target = crate::JoinNamespaces {
            pid: Some("/proc/42/ns/pid".into()),
            ..Default::default()
        };
        join_namespaces(&mut spec, &target).unwrap();
        let ns = ns_types(&spec);
        let pids: Vec<_> = ns
            .iter()
            .filter(|(t, _)| *t == LinuxNamespaceType::Pid)
            .collect();
        assert_eq!(
            pids,
            vec![&(LinuxNamespaceType::Pid, Some("/proc/42/ns/pid".into()))]
        );
    }

    fn caps_of(spec: &Spec) -> LinuxCapabilities {
        spec.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap()
    }

    #[test]
    fn default_caps_add_drop_privileged() {
        let mut s = base_spec();
        let c = caps_of(&build(&s));
        let b = c.bounding().clone().unwrap();
        assert_eq!(b.len(), DEFAULT_CAPS.len());
        assert_eq!(c.effective().clone().unwrap(), b);
        assert_eq!(c.permitted().clone().unwrap(), b);
        assert!(c.inheritable().is_none());
        assert!(c.ambient().is_none());
        assert!(!b.contains(&Capability::SysAdmin));

        s.cap_add = vec!["NET_ADMIN".into(), "cap_sys_time".into()];
        s.cap_drop = vec!["CAP_CHOWN".into(), "mknod".into()];
        let b = caps_of(&build(&s)).bounding().clone().unwrap();
        assert!(b.contains(&Capability::NetAdmin));
        assert!(b.contains(&Capability::SysTime));
        assert!(!b.contains(&Capability::Chown));
        assert!(!b.contains(&Capability::Mknod));
        assert_eq!(b.len(), DEFAULT_CAPS.len());

        s.cap_drop = vec!["ALL".into()];
        s.cap_add = vec![];
        assert!(caps_of(&build(&s)).bounding().clone().unwrap().is_empty());

        s.cap_add = vec!["NOT_A_CAP".into()];
        assert!(matches!(
            build_oci_spec(&s, "x", Path::new("/r"), "/c"),
            Err(RuntimeError::InvalidSpec(_))
        ));

        let mut s = base_spec();
        s.privileged = true;
        let spec = build(&s);
        assert_eq!(capability_set(&s).unwrap().len(), ALL_CAPS.len());
        let b = caps_of(&spec).bounding().clone().unwrap();
        assert_eq!(b, bounding_caps());
        assert!(b.contains(&Capability::SysAdmin));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().as_ref().is_none_or(|m| m.is_empty()));
    }

    #[test]
    fn resources() {
        let mut s = base_spec();
        s.memory = Some(64 << 20);
        s.cpus = Some(0.5);
        s.cpu_shares = Some(512);
        s.pids_limit = Some(5);
        let spec = build(&s);
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.swap(), Some(64 << 20));
        let c = r.cpu().clone().unwrap();
        assert_eq!(c.quota(), Some(50_000));
        assert_eq!(c.period(), Some(100_000));
        assert_eq!(c.shares(), Some(512));
        assert_eq!(r.pids().unwrap().limit(), 5);
        let d = r.devices().clone().unwrap();
        assert_eq!(d.len(), 1);
        assert!(!d[0].allow());

        let spec = build(&base_spec());
        let r = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert!(r.memory().is_none() && r.cpu().is_none() && r.pids().is_none());

        let mut s = base_spec();
        s.memory = Some(0);
        assert!(build_oci_spec(&s, "x", Path::new("/r"), "/c").is_err());
    }

    #[test]
    fn mounts_masked_paths_process() {
        let mut s = base_spec();
        s.mounts = vec![
            BindMount {
                source: "/host/a".into(),
                destination: "/a".into(),
                readonly: true,
            },
            BindMount {
                source: "/host/b".into(),
                destination: "/b".into(),
                readonly: false,
            },
        ];
        s.cwd = "/work".into();
        s.uid = 1000;
        s.gid = 1001;
        s.additional_gids = vec![5, 6];
        s.readonly_rootfs = true;
        s.hostname = Some("box".into());
        let spec = build(&s);
        let mounts = spec.mounts().as_ref().unwrap();
        let dests: Vec<_> = mounts
            .iter()
            .map(|m| m.destination().to_string_lossy().to_string())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/a",
            "/b",
        ] {
            assert!(dests.iter().any(|x| x == d), "{d} missing in {dests:?}");
        }
        let a = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/a"))
            .unwrap();
        let opts = a.options().clone().unwrap();
        assert!(opts.contains(&"rbind".to_string()) && opts.contains(&"ro".to_string()));
        let b = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/b"))
            .unwrap();
        assert!(!b.options().clone().unwrap().contains(&"ro".to_string()));

        let linux = spec.linux().as_ref().unwrap();
        let ro = linux.readonly_paths().clone().unwrap();
        assert_eq!(ro[..READONLY_PATHS.len()], *READONLY_PATHS);
        assert_eq!(ro[READONLY_PATHS.len()..], *cgroup_v1_readonly_paths());
        let masked = linux.masked_paths().clone().unwrap();
        assert!(masked.contains(&"/proc/kcore".to_string()));
        assert_eq!(masked.len(), MASKED_PATHS.len());
        assert!(linux
            .readonly_paths()
            .clone()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        let sc = linux.seccomp().clone().unwrap();
        assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActAllow);
        let names = sc.syscalls().clone().unwrap()[0].names().clone();
        assert!(names.contains(&"kexec_load".to_string()));
        assert!(names.contains(&"ptrace".to_string()));
        // CAP_SYS_PTRACE (kubectl debug --profile=general) allows tracing, as docker does.
        let mut traced = base_spec();
        traced.cap_add = vec!["SYS_PTRACE".into()];
        let spec2 = build(&traced);
        let names2 = spec2
            .linux()
            .clone()
            .unwrap()
            .seccomp()
            .clone()
            .unwrap()
            .syscalls()
            .clone()
            .unwrap()[0]
            .names()
            .clone();
        assert!(!names2.contains(&"ptrace".to_string()));
        assert!(names2.contains(&"kexec_load".to_string()));

        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 1001);
        assert_eq!(p.user().additional_gids().clone().unwrap(), vec![5, 6]);
        assert_eq!(p.no_new_privileges(), Some(true));
        let env = p.env().clone().unwrap();
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(env.contains(&"A=B".to_string()));
        let rl = p.rlimits().clone().unwrap();
        assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!(rl[0].hard(), nofile_limit());
        assert!(nofile_limit() <= NOFILE);
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("box"));
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/skiff-1/abc"))
        );

        let mut s = base_spec();
        s.cwd = "relative".into();
        assert!(build_oci_spec(&s, "x", Path::new("/r"), "/c").is_err());
        let mut s = base_spec();
        s.args.clear();
        assert!(build_oci_spec(&s, "x", Path::new("/r"), "/c").is_err());
    }

    #[test]
    fn capability_numbers() {
        assert_eq!(ALL_CAPS.len(), 41);
        assert_eq!(ALL_CAPS[21], Capability::SysAdmin);
        assert_eq!(ALL_CAPS[40], Capability::CheckpointRestore);
        assert!(bounding_caps().contains(&Capability::Chown));
    }

    #[test]
    fn default_hostname_is_short_id() {
        let spec = build_oci_spec(&base_spec(), "0123456789abcdef", Path::new("/r"), "/c").unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
    }

    #[test]
    fn cgroups_path_is_data_dir_specific() {
        let a = cgroups_path(Path::new("/var/lib/skiff"), "id1");
        let b = cgroups_path(Path::new("/tmp/other"), "id1");
        assert_ne!(a, b);
        assert!(a.starts_with("/skiff-") && a.ends_with("/id1"));
        assert_eq!(a, cgroups_path(Path::new("/var/lib/skiff"), "id1"));
        assert!(a.starts_with(&cgroup_parent(Path::new("/var/lib/skiff"))));
    }
}
