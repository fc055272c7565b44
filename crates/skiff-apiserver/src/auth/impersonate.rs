//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-*` headers turn the
//! request into the named user after the real user is authorized to `impersonate` each part
//! (users or serviceaccounts, groups, uids, userextras), as upstream's impersonation filter.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;
use skiff_api::ApiError;

use super::user::{groups, users, UserInfo};
use crate::authz::{self, Attributes};
use crate::AppState;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Whether the request asks to impersonate anyone.
pub(crate) fn requested(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        k.as_str() == USER
            || k.as_str() == GROUP
            || k.as_str() == UID
            || k.as_str().starts_with(EXTRA_PREFIX)
    })
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Result<Vec<&'a str>, ApiError> {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("invalid {name} header")))
        })
        .collect()
}

/// Percent-decodes an extra key (upstream escapes keys in header names).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = key
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check_attrs(
    user: &Arc<UserInfo>,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        api_group: group.into(),
        resource: resource.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// The user the request acts as: `real` itself, or the impersonated user once every part was
/// authorized (403 otherwise; 400 for groups or extras without a user).
pub(crate) async fn resolve(
    st: &AppState,
    real: Arc<UserInfo>,
    headers: &HeaderMap,
) -> Result<Arc<UserInfo>, ApiError> {
    if !requested(headers) {
        return Ok(real);
    }
    let user = values(headers, USER)?;
    let group_list = values(headers, GROUP)?;
    let uid = values(headers, UID)?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix(EXTRA_PREFIX) {
            let v = v
                .to_str()
                .map_err(|_| ApiError::bad_request(format!("invalid {k} header")))?;
            extra.entry(unescape(key)).or_default().push(v.to_string());
        }
    }
    let Some(name) = user.first().copied().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "requested {} without impersonating a user",
            describe(&group_list, &uid, &extra)
        )));
    };
    let mut target = UserInfo {
        name: name.to_string(),
        ..Default::default()
    };
    // The user (or ServiceAccount) itself.
    let sa = UserInfo {
        name: name.to_string(),
        ..Default::default()
    };
    let attrs = match sa.service_account() {
        Some((ns, sa_name)) => {
            target.groups.push(groups::SERVICE_ACCOUNTS.into());
            target.groups.push(format!("system:serviceaccounts:{ns}"));
            check_attrs(&real, "", "serviceaccounts", ns, sa_name)
        }
        None => check_attrs(&real, "", "users", "", name),
    };
    authz::check(st, &attrs).await?;
    for g in &group_list {
        authz::check(st, &check_attrs(&real, "", "groups", "", g)).await?;
        if !target.groups.iter().any(|x| x == g) {
            target.groups.push(g.to_string());
        }
    }
    if let Some(u) = uid.first() {
        authz::check(
            st,
            &check_attrs(&real, "authentication.k8s.io", "uids", "", u),
        )
        .await?;
        target.uid = u.to_string();
    }
    for (k, vs) in &extra {
        for v in vs {
            let a = check_attrs(
                &real,
                "authentication.k8s.io",
                &format!("userextras/{k}"),
                "",
                v,
            );
            authz::check(st, &a).await?;
        }
    }
    target.extra = extra;
    // Upstream adds the virtual group every request of a user carries.
    let virtual_group = if name == users::ANONYMOUS {
        groups::UNAUTHENTICATED
    } else {
        groups::AUTHENTICATED
    };
    if !target.groups.iter().any(|g| g == virtual_group) {
        target.groups.push(virtual_group.into());
    }
    Ok(Arc::new(target))
}

fn describe(groups: &[&str], uid: &[&str], extra: &BTreeMap<String, Vec<String>>) -> String {
    let mut parts = Vec::new();
    if !groups.is_empty() {
        parts.push(format!("groups={groups:?}"));
    }
    if !uid.is_empty() {
        parts.push(format!("uid={uid:?}"));
    }
    if !extra.is_empty() {
        parts.push(format!("extra={extra:?}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(unescape("example.com%2fteam"), "example.com/team");
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("bad%zz"), "bad%zz");
        assert_eq!(unescape("end%2"), "end%2");
    }
}
