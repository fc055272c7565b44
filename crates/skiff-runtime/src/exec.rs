//! `exec` into a running container with exactly the container's sandbox, like `runc exec`:
//! the process spec is the container's own (capabilities in all five sets, no_new_privs,
//! rlimits, user and groups, AppArmor profile, SELinux label), only argv/env/cwd (and an
//! explicit user) replaced; libcontainer's tenant builder joins the init's namespaces and
//! cgroup; [`SeccompExecutor`] installs the container's seccomp filter right before execve
//! (the tenant builder itself drops `linux.seccomp`).

use std::path::PathBuf;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{LinuxSeccomp, Process, Spec};

use crate::ExecOptions;

#[derive(Clone)]
pub(crate) struct SeccompExecutor {
    pub seccomp: Option<LinuxSeccomp>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(seccomp) = &self.seccomp {
            // Runs in the exec'd process after capabilities, user and no_new_privs are set.
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| ExecutorError::Other(format!("installing seccomp: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// The container's process spec with the exec's argv, env (KEY=VALUE overriding the
/// container's), cwd and user (an explicit uid without gid means gid 0, as docker).
pub(crate) fn exec_process(oci: &Spec, opts: &ExecOptions) -> Result<Process, String> {
    let mut p = oci
        .process()
        .clone()
        .ok_or("the container's spec has no process")?;
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(false));
    p.set_console_size(None);
    let keys: Vec<&str> = opts
        .env
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    let mut env: Vec<String> = p
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !keys.contains(&e.split('=').next().unwrap_or("")))
        .collect();
    env.extend(opts.env.iter().filter(|kv| kv.contains('=')).cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        if !cwd.starts_with('/') {
            return Err(format!("working directory {cwd:?} is not absolute"));
        }
        p.set_cwd(PathBuf::from(cwd));
    }
    if opts.uid.is_some() || opts.gid.is_some() {
        let mut user = p.user().clone();
        if let Some(uid) = opts.uid {
            user.set_uid(uid);
            user.set_gid(opts.gid.unwrap_or(0));
            user.set_additional_gids(None);
        } else if let Some(gid) = opts.gid {
            user.set_gid(gid);
        }
        p.set_user(user);
    }
    Ok(p)
}

/// Deletes a file when dropped (the exec's process.json).
pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::build_oci_spec;
    use crate::ContainerSpec;
    use std::path::Path;

    #[test]
    fn exec_process_keeps_the_sandbox() {
        let s = ContainerSpec {
            args: vec!["sleep".into()],
            env: vec!["A=1".into(), "B=2".into()],
            uid: 1000,
            gid: 1001,
            additional_gids: vec![7],
            ..Default::default()
        };
        let oci = build_oci_spec(&s, "x", Path::new("/r"), "/c").unwrap();
        let opts = ExecOptions {
            args: vec!["sh".into()],
            env: vec!["B=3".into()],
            cwd: None,
            stdin: false,
            uid: None,
            gid: None,
        };
        let p = exec_process(&oci, &opts).unwrap();
        let init = oci.process().as_ref().unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.capabilities(), init.capabilities());
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.rlimits(), init.rlimits());
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[7][..]));
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"A=1".into()) && env.contains(&"B=3".into()));
        assert!(!env.contains(&"B=2".into()));
        let opts = ExecOptions {
            uid: Some(0),
            cwd: Some("rel".into()),
            ..opts
        };
        assert!(exec_process(&oci, &opts).is_err());
    }
}
