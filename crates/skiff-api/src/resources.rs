//! The resources skiff serves, with everything discovery needs: the data of each kind's
//! module in `kinds`, looked up by URL parts or by apiVersion and kind.

use std::sync::LazyLock;

/// One served resource (a kind at one group/version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// e.g. "deployments".
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// e.g. ["status", "scale"] or ["status", "binding", "eviction", "log", "exec"].
    pub subresources: &'static [&'static str],
}

/// Every served resource, in discovery order (derived from [`crate::kinds::registry`]).
pub fn all() -> &'static [ResourceInfo] {
    static ALL: LazyLock<Vec<ResourceInfo>> = LazyLock::new(|| {
        // Extra versions follow their kind, so discovery lists the stored version first
        // (preferred).
        crate::kinds::registry()
            .iter()
            .flat_map(|k| {
                std::iter::once(k.info.clone()).chain(k.alt_versions.iter().map(|a| ResourceInfo {
                    version: a.version,
                    ..k.info.clone()
                }))
            })
            .collect()
    });
    &ALL
}

/// Looks up by URL parts: group ("" for core), version, plural.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks up by apiVersion ("v1", "apps/v1") and kind.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

impl ResourceInfo {
    /// "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a delete that names no propagation policy orphans the dependents (the kind's
    /// `orphans_by_default` at the served version).
    pub fn orphans_by_default(&self) -> bool {
        let kind = crate::kinds::of(self);
        kind.orphans_by_default && kind.info.version == self.version
    }

    /// "pods" or "deployments.apps", as used in messages and Status details.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}
