//! Image references: `name[:tag][@digest]` (tag defaults to `latest` when neither is given),
//! parsed by `oci_client::Reference` (the distribution grammar), and image IDs.

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
    /// "nginx@sha256:<hex>", "nginx:1.25@sha256:<hex>".
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: String| ImageError::InvalidReference(s.to_string(), why);
        let parsed = oci_client::Reference::try_from(s).map_err(|e| bad(e.to_string()))?;
        // The grammar lets an upper-case first component through as a (non-)domain.
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                oci_client::ParseError::NameContainsUppercase.to_string()
            ));
        }
        let digest = parsed.digest().map(str::to_string);
        // The name is the input minus the "@digest" and ":tag" the parser found.
        let mut name = s;
        if let Some(d) = &digest {
            name = name
                .strip_suffix(d.as_str())
                .and_then(|n| n.strip_suffix('@'))
                .unwrap_or(name);
        }
        let written_tag = parsed.tag().and_then(|t| {
            name.strip_suffix(t)
                .and_then(|n| n.strip_suffix(':'))
                .map(|n| (n, t))
        });
        let tag = match written_tag {
            Some((n, t)) => {
                name = n;
                Some(t.to_string())
            }
            // No tag in the input: the parser's default ("latest"), or none beside a digest.
            None => parsed.tag().map(str::to_string),
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
