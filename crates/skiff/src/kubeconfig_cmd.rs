//! `skiff kubeconfig`: mint a kubeconfig for a user (client certificate from the cluster CA).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

#[derive(Args)]
pub struct KubeconfigArgs {
    /// The user name (the certificate's CN).
    #[arg(long)]
    user: String,
    /// A group (the certificate's O); repeat for several.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// How long the certificate is valid: e.g. 30m, 24h, 7d, 1h30m (at most 365d).
    #[arg(long, default_value = "24h")]
    ttl: String,
    /// Write the kubeconfig here (mode 0600) instead of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The API server URL to put in the kubeconfig (default: the admin kubeconfig's).
    #[arg(long)]
    server: Option<String>,
}

/// Parses a lifetime: one or more `<integer><unit>` with units d, h, m, s (`1d12h`, `90m`).
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let bad = || {
        anyhow::anyhow!(
            "invalid --ttl {text:?}: use a number with a unit d, h, m or s, like 24h or 1h30m"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'd' => 86400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    let ttl = Duration::from_secs(total);
    let max = skiff_apiserver::auth::mint::MAX_TTL;
    if ttl.is_zero() {
        bail!("invalid --ttl {text:?}: must be more than zero");
    }
    if ttl > max {
        bail!("invalid --ttl {text:?}: at most {}d", max.as_secs() / 86400);
    }
    Ok(ttl)
}

pub fn run(data_dir: &Path, args: KubeconfigArgs) -> anyhow::Result<()> {
    let ttl = parse_ttl(&args.ttl)?;
    let text = skiff_apiserver::auth::mint::user_kubeconfig(
        data_dir,
        args.server.as_deref(),
        &args.user,
        &args.groups,
        ttl,
    )?;
    match args.out {
        Some(path) => skiff_client::fs::write_private(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units_and_are_bounded() {
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("365d").unwrap(), Duration::from_secs(365 * 86400));
        for bad in ["", "24", "h", "1y", "-1h", "1.5h", "0s"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        let err = parse_ttl("366d").unwrap_err().to_string();
        assert_eq!(err, "invalid --ttl \"366d\": at most 365d");
    }
}
