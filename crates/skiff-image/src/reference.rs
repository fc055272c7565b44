//! Image references: `name[:tag][@digest]` (tag defaults to `latest` when neither is given),
//! in the distribution grammar, and image IDs.

use crate::{ImageError, Result};

/// A parsed reference. `name` is spelled as the user wrote it (no Docker Hub expansion; see
/// [`aliases`]); at least one of `tag` and `digest` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// Parses "web", "web:v1", "docker.io/library/nginx:1.25", "localhost:5000/x/y:t",
    /// "nginx@sha256:<hex>", "nginx:1.25@sha256:<hex>": the distribution grammar. A colon after
    /// the last '/' separates the tag.
    ///
    /// Hand-written on purpose: `oci_client::Reference` parses with a regex whose first use
    /// costs ~12.7 MiB of resident memory (measured), and every pod start parses a reference;
    /// the registry client still uses its own type, only when it pulls.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: String| ImageError::InvalidReference(s.to_string(), why);
        if s.is_empty() {
            return Err(bad("empty reference".into()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(bad)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        validate_name(name).map_err(bad)?;
        if let Some(t) = tag {
            validate_tag(t).map_err(bad)?;
        }
        // Neither tag nor digest means `latest`; a digest alone pins the image without one.
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            name: name.to_string(),
            tag,
            digest,
        })
    }

    /// The same tag and digest under another name.
    pub(crate) fn with_name(&self, name: String) -> Reference {
        Reference {
            name,
            ..self.clone()
        }
    }
}

/// `algorithm:hex` with the registered algorithms' lengths (sha256: 64, sha512: 128 lowercase
/// hex digits), as the distribution spec requires.
fn validate_digest(d: &str) -> std::result::Result<(), String> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| format!("digest {d:?} must be algorithm:hex"))?;
    let want = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?}")),
    };
    if hex.len() != want || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {d:?} must be {alg}:<{want} lowercase hex digits>"
        ));
    }
    Ok(())
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        ))
    }
}

fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 255 {
        return Err("name longer than 255 characters".into());
    }
    let comps: Vec<&str> = name.split('/').collect();
    for (i, comp) in comps.iter().enumerate() {
        // The first of several components may be a registry host[:port].
        let is_domain = i == 0
            && comps.len() > 1
            && (comp.contains('.') || comp.contains(':') || *comp == "localhost");
        if is_domain {
            let (host, port) = match comp.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (*comp, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Err(format!("invalid registry host {comp:?}"));
            }
            continue;
        }
        let b = comp.as_bytes();
        let ok = !b.is_empty()
            && b.iter().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            })
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric();
        if !ok {
            return Err(format!(
                "name component {comp:?} must be lowercase letters and digits separated by '.', '_' or '-'"
            ));
        }
    }
    Ok(())
}

/// If `s` looks like an image ID or ID prefix, returns the lowercase hex part.
/// "sha256:<hex>" always counts; bare hex needs at least 4 characters.
pub(crate) fn id_prefix(s: &str) -> Option<&str> {
    let (hex, min) = match s.strip_prefix("sha256:") {
        Some(h) => (h, 1),
        None => (s, 4),
    };
    (hex.len() >= min
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// Other spellings of the same Docker Hub name, tried when a lookup misses
/// ("nginx" <-> "docker.io/library/nginx").
pub(crate) fn aliases(r: &Reference) -> Vec<Reference> {
    let mut out = Vec::new();
    let mk = |name: String| r.with_name(name);
    if let Some(rest) = r.name.strip_prefix("docker.io/library/") {
        out.push(mk(rest.to_string()));
        out.push(mk(format!("library/{rest}")));
    } else if let Some(rest) = r.name.strip_prefix("docker.io/") {
        out.push(mk(rest.to_string()));
    } else if !r.name.contains('/') {
        out.push(mk(format!("docker.io/library/{}", r.name)));
    } else if !r
        .name
        .split('/')
        .next()
        .is_some_and(|c| c.contains('.') || c.contains(':') || c == "localhost")
    {
        out.push(mk(format!("docker.io/{}", r.name)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, String) {
        let r = Reference::parse(s).unwrap();
        assert_eq!(r.digest, None);
        (r.name, r.tag.unwrap())
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_digests() {
        let d = format!("sha256:{HEX}");
        let r = Reference::parse(&format!("nginx@{d}")).unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("nginx", None, Some(d.as_str()))
        );
        assert_eq!(r.to_string(), format!("nginx@{d}"));
        let r = Reference::parse(&format!("localhost:5000/x/y:v1@{d}")).unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("localhost:5000/x/y", Some("v1"), Some(d.as_str()))
        );
        assert_eq!(r.to_string(), format!("localhost:5000/x/y:v1@{d}"));
        // Hub spellings keep the digest.
        let r = Reference::parse(&format!("nginx@{d}")).unwrap();
        let a = aliases(&r);
        assert_eq!(a[0].to_string(), format!("docker.io/library/nginx@{d}"));
        for bad in [
            format!("nginx@sha256:{}", &HEX[..40]),
            format!("nginx@md5:{HEX}"),
            format!("@sha256:{HEX}"),
        ] {
            assert!(
                matches!(
                    Reference::parse(&bad),
                    Err(ImageError::InvalidReference(..))
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn parses_names_and_tags() {
        assert_eq!(p("web:v1"), ("web".into(), "v1".into()));
        assert_eq!(p("web"), ("web".into(), "latest".into()));
        assert_eq!(
            p("docker.io/library/nginx:1.25"),
            ("docker.io/library/nginx".into(), "1.25".into())
        );
        assert_eq!(
            p("localhost:5000/x/y:t"),
            ("localhost:5000/x/y".into(), "t".into())
        );
        assert_eq!(
            p("localhost:5000/x/y"),
            ("localhost:5000/x/y".into(), "latest".into())
        );
        assert_eq!(
            p("a.b/c_d/e-f:V_1.2-x"),
            ("a.b/c_d/e-f".into(), "V_1.2-x".into())
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Web:v1",
            "web:",
            "web:-x",
            "web:a b",
            "/web",
            "web/",
            "web//x",
            "-web",
            "web:v1:v2",
            "x@sha256:abcd",
            "we$b",
            "Web/x:v1",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(ImageError::InvalidReference(..))),
                "{bad:?} should be rejected"
            );
        }
        let long_tag = format!("web:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        assert!(Reference::parse(&format!("web:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn id_prefixes() {
        assert_eq!(id_prefix("sha256:abcd"), Some("abcd"));
        assert_eq!(id_prefix("abcd12"), Some("abcd12"));
        assert_eq!(id_prefix("abc"), None);
        assert_eq!(id_prefix("web"), None);
        assert_eq!(id_prefix("sha256:xyz"), None);
    }

    #[test]
    fn hub_aliases() {
        let r = Reference::parse("nginx:1").unwrap();
        assert_eq!(aliases(&r)[0].name, "docker.io/library/nginx");
        let r = Reference::parse("docker.io/library/nginx:1").unwrap();
        assert_eq!(aliases(&r)[0].name, "nginx");
    }
}
