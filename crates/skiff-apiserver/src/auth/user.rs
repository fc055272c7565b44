//! Who a request is: upstream's `user.Info` (name, uid, groups, extra) and the well-known
//! users and groups skiff's own components and the bootstrap policy use.

use std::collections::BTreeMap;

use serde::Serialize;

/// Upstream's well-known groups.
pub mod groups {
    pub const MASTERS: &str = "system:masters";
    pub const AUTHENTICATED: &str = "system:authenticated";
    pub const UNAUTHENTICATED: &str = "system:unauthenticated";
    pub const NODES: &str = "system:nodes";
    pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
    pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
}

/// Upstream's well-known users.
pub mod users {
    /// The API server's own loopback identity.
    pub const APISERVER: &str = "system:apiserver";
    pub const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
    pub const SCHEDULER: &str = "system:kube-scheduler";
    pub const ANONYMOUS: &str = "system:anonymous";
    /// The admin kubeconfig's user (k3s names it the same).
    pub const ADMIN: &str = "system:admin";
    /// The node join token, before it is exchanged for a node certificate.
    pub const NODE_BOOTSTRAP: &str = "system:bootstrap:skiff-node";
}

pub const NODE_PREFIX: &str = "system:node:";
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An authenticated (or impersonated) user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct UserInfo {
    #[serde(rename = "username")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user in `groups` plus `system:authenticated` (as every authenticator adds it).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == groups::AUTHENTICATED) {
            groups.push(groups::AUTHENTICATED.to_string());
        }
        UserInfo {
            name: name.into(),
            groups,
            ..Default::default()
        }
    }

    /// The API server's own identity (in-process work: namespace finalization, bootstrap).
    pub fn apiserver() -> Self {
        Self::new(users::APISERVER, &[groups::MASTERS])
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `system:masters` bypasses authorization (upstream's privileged group).
    pub fn is_master(&self) -> bool {
        self.in_group(groups::MASTERS)
    }

    /// The node name of a node identity (`system:node:<name>` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        self.name
            .strip_prefix(NODE_PREFIX)
            .filter(|n| !n.is_empty() && self.in_group(groups::NODES))
    }

    /// `(namespace, name)` of a ServiceAccount identity.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
    }

    /// The username and groups of ServiceAccount `ns/name` (upstream's `serviceaccount.UserInfo`).
    pub fn for_service_account(ns: &str, name: &str, uid: &str) -> Self {
        let mut u = Self::new(
            format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{name}"),
            &[
                groups::SERVICE_ACCOUNTS,
                &format!("system:serviceaccounts:{ns}"),
            ],
        );
        u.uid = uid.to_string();
        u
    }

    /// The user and groups of node `name`.
    pub fn for_node(name: &str) -> Self {
        Self::new(format!("{NODE_PREFIX}{name}"), &[groups::NODES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_recognised_only_with_their_groups() {
        let node = UserInfo::for_node("n1");
        assert_eq!(node.node_name(), Some("n1"));
        assert!(node.in_group(groups::AUTHENTICATED));
        // The name alone does not make a node.
        let fake = UserInfo::new("system:node:n1", &[]);
        assert_eq!(fake.node_name(), None);
        let sa = UserInfo::for_service_account("ns", "build", "u1");
        assert_eq!(sa.service_account(), Some(("ns", "build")));
        assert!(sa.in_group("system:serviceaccounts:ns"));
        assert_eq!(
            UserInfo::new("system:serviceaccount:ns", &[]).service_account(),
            None
        );
        assert!(UserInfo::apiserver().is_master());
        assert!(!sa.is_master());
    }
}
