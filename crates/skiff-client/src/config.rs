//! `kube::Client`s as skiff's processes build them: from a kubeconfig file (the admin
//! kubeconfig the API server writes, tests), or from the server URL, cluster CA and node token
//! an agent joins with.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;

/// A client for the current context of the kubeconfig at `path`.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kc = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    no_blind_retries(&mut config);
    Ok(kube::Client::try_from(config)?)
}

/// A client for `server` trusting only the cluster CA in `ca_pem`, authenticating with `token`
/// (the node token).
pub fn with_token(server: &str, ca_pem: &[u8], token: &str) -> Result<kube::Client, Error> {
    let mut config = base_config(server, ca_pem)?;
    config.auth_info.token = Some(token.to_string().into());
    Ok(kube::Client::try_from(config)?)
}

/// A client for `server` trusting only the cluster CA in `ca_pem`, authenticating with a client
/// certificate (`cert_pem`, `key_pem`).
pub fn with_client_cert(
    server: &str,
    ca_pem: &[u8],
    cert_pem: &str,
    key_pem: &str,
) -> Result<kube::Client, Error> {
    let mut config = base_config(server, ca_pem)?;
    config.auth_info.client_certificate_data = Some(base64_encode(cert_pem));
    config.auth_info.client_key_data = Some(base64_encode(key_pem).into());
    Ok(kube::Client::try_from(config)?)
}

/// kube's default retry layer repeats a 429/503/504 up to 15 times with back-off growing to
/// 1000 s, so one request to an unavailable aggregated API (a 503 with no Retry-After) would
/// hang a controller for minutes. Like client-go, skiff's clients leave retrying to the caller:
/// every controller requeues a failed reconcile with its own back-off.
fn no_blind_retries(config: &mut kube::Config) {
    config.default_retry = false;
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn base_config(server: &str, ca_pem: &[u8]) -> Result<kube::Config, Error> {
    let url: http::Uri = server.parse().map_err(|source| Error::BadUrl {
        url: server.to_string(),
        source,
    })?;
    let mut config = kube::Config::new(url);
    no_blind_retries(&mut config);
    let certs = rustls_pemfile::certs(&mut &ca_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadCa(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::BadCa("no certificate in the CA file".into()));
    }
    config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_kubeconfig_names_the_file() {
        let Err(err) = from_kubeconfig(Path::new("/nonexistent/skiff-kubeconfig.yaml")).await
        else {
            panic!("a client from a missing file");
        };
        assert!(
            err.to_string()
                .contains("/nonexistent/skiff-kubeconfig.yaml"),
            "{err}"
        );
    }

    #[test]
    fn token_client_needs_a_ca_certificate() {
        let Err(err) = with_token("https://127.0.0.1:6443", b"not a pem", "t") else {
            panic!("a client without a CA");
        };
        assert!(matches!(err, Error::BadCa(_)), "{err}");
        let Err(err) = with_token("not a url\n", b"", "t") else {
            panic!("a client for a bad URL");
        };
        assert!(matches!(err, Error::BadUrl { .. }), "{err}");
    }
}
